-- A counter bumped by every revocation (token, grant, client, user). Replicas poll it to know when
-- their cached "this token is still live" answers may have gone stale.
CREATE TABLE revocation_epoch (
    id BIGINT PRIMARY KEY,
    epoch BIGINT NOT NULL
);
INSERT INTO revocation_epoch (id, epoch) VALUES (1, 0);
