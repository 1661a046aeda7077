-- Where a service revokes tokens (RFC 7009), so disconnecting a credential revokes it there too.
ALTER TABLE services ADD COLUMN revocation_url TEXT;
