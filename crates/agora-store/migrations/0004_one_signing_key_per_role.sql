-- At most one key signs and at most one waits to: replicas starting (or rotating) at the same time
-- cannot both install keys; the loser's insert fails and it uses the winner's.
CREATE UNIQUE INDEX signing_keys_one_per_role ON signing_keys (state) WHERE state IN ('active', 'next');
