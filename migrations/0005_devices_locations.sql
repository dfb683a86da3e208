-- Devices and locations: where and with what each user signs in. Maintained by the
-- `devices` projector from session events only, so ids are derived from event data
-- (a hash of tenant + user agent, tenant + IP), never from sequences or now().

CREATE TABLE devices (
    tenant_id  uuid        NOT NULL,
    id         uuid        NOT NULL,  -- derived: hash(tenant, user agent)
    name       text        NOT NULL,  -- client family + major version, e.g. 'Firefox 120'
    os         text        NOT NULL,  -- e.g. 'Windows 10/11', 'Android 14'
    created_at timestamptz NOT NULL,  -- first sighting in this tenant
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE user_devices (
    tenant_id     uuid        NOT NULL,
    user_id       uuid        NOT NULL,
    device_id     uuid        NOT NULL,
    first_seen_at timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,  -- last login or refresh from this device
    PRIMARY KEY (tenant_id, user_id, device_id)
);
-- "My devices, most recently seen first".
CREATE INDEX user_devices_recent ON user_devices (tenant_id, user_id, last_seen_at DESC, device_id);

CREATE TABLE locations (
    tenant_id  uuid        NOT NULL,
    id         uuid        NOT NULL,  -- derived: hash(tenant, IP address)
    ip_address text        NOT NULL,
    geo_json   jsonb,                 -- NULL unless a GeoIP lookup is configured
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE user_locations (
    tenant_id     uuid        NOT NULL,
    user_id       uuid        NOT NULL,
    location_id   uuid        NOT NULL,
    first_seen_at timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, user_id, location_id)
);
-- "My locations, most recently seen first".
CREATE INDEX user_locations_recent ON user_locations (tenant_id, user_id, last_seen_at DESC, location_id);

-- Which device and location each session started from, so a refresh (which carries
-- neither) can bump the right rows. Owned by the `devices` projector.
CREATE TABLE session_devices (
    tenant_id   uuid NOT NULL,
    session_id  uuid NOT NULL,
    user_id     uuid NOT NULL,
    device_id   uuid NOT NULL,
    location_id uuid NOT NULL,
    PRIMARY KEY (tenant_id, session_id)
);

SELECT chronicle_protect_read_table(t) FROM unnest(ARRAY['devices', 'user_devices', 'locations', 'user_locations', 'session_devices']::regclass[]) AS t;
