//! `devices`, `user_devices`, `locations`, `user_locations` (and the helper
//! `session_devices`): which clients and addresses each user signs in from.
//!
//! Identity is derived from event data only — a device is (tenant, exact User-Agent), a
//! location is (tenant, IP) — hashed into a UUID, so a rebuild reproduces every id.
//! Batches are folded in memory first (earliest first-seen, latest last-seen per key)
//! and written with one `unnest` statement per table; the folds are order-independent,
//! so the result does not depend on how events fall into batches.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{EventRecord, Projector, user_agent};
use crate::aggregates::SessionEvent;
use crate::privacy::ERASED;

/// Where an IP address is, as JSON (e.g. `{"country":"DE","city":"Berlin"}`).
/// Must be a pure function of the address and the loaded database: it runs inside the
/// projector, and a rebuild reproduces `geo_json` only if the database is unchanged.
pub trait GeoLookup: Send + Sync {
    fn lookup(&self, ip: IpAddr) -> Option<serde_json::Value>;
}

/// Without a lookup (the default) `locations.geo_json` stays NULL.
#[derive(Default, Clone)]
pub struct DevicesProjector {
    geo: Option<Arc<dyn GeoLookup>>,
}

impl DevicesProjector {
    pub fn with_geo(geo: Arc<dyn GeoLookup>) -> Self {
        Self { geo: Some(geo) }
    }
}

/// The device id of a User-Agent string within a tenant.
pub fn device_id(tenant_id: Uuid, user_agent: &str) -> Uuid {
    derived_id(b"device", tenant_id, user_agent)
}

/// The location id of an IP address (as recorded in the event) within a tenant.
pub fn location_id(tenant_id: Uuid, ip: &str) -> Uuid {
    derived_id(b"location", tenant_id, ip)
}

/// A version 8 UUID from SHA-256 over a domain tag, the tenant and the key: stable
/// across rebuilds and releases, and different per tenant (no cross-tenant linkage).
fn derived_id(kind: &[u8], tenant_id: Uuid, key: &str) -> Uuid {
    let mut hasher = Sha256::new();
    hasher.update(b"chronicle:");
    hasher.update(kind);
    hasher.update([0u8]);
    hasher.update(tenant_id.as_bytes());
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

type Seen = (DateTime<Utc>, DateTime<Utc>);

fn widen(seen: &mut Seen, at: DateTime<Utc>) {
    seen.0 = seen.0.min(at);
    seen.1 = seen.1.max(at);
}

struct DeviceRow {
    name: String,
    os: String,
    created_at: DateTime<Utc>,
}

struct LocationRow {
    ip_address: String,
    geo_json: Option<String>,
    created_at: DateTime<Utc>,
}

/// One batch folded per key. BTreeMaps keep the statements' row order stable.
#[derive(Default)]
struct Batch {
    devices: BTreeMap<(Uuid, Uuid), DeviceRow>,
    user_devices: BTreeMap<(Uuid, Uuid, Uuid), Seen>,
    locations: BTreeMap<(Uuid, Uuid), LocationRow>,
    user_locations: BTreeMap<(Uuid, Uuid, Uuid), Seen>,
    /// (tenant, session) → (user, device, location)
    sessions: BTreeMap<(Uuid, Uuid), (Uuid, Uuid, Uuid)>,
    /// (tenant, session) → latest refresh
    refreshes: BTreeMap<(Uuid, Uuid), DateTime<Utc>>,
}

impl Batch {
    fn started(
        &mut self,
        e: &EventRecord,
        session: Uuid,
        user: Uuid,
        ua: &str,
        ip: &str,
        geo: Option<&dyn GeoLookup>,
    ) {
        let (tenant, at) = (e.tenant_id, e.recorded_at);
        let device = device_id(tenant, ua);
        let location = location_id(tenant, ip);
        let d = self.devices.entry((tenant, device)).or_insert_with(|| {
            let parsed = user_agent::parse(ua);
            DeviceRow {
                name: parsed.name,
                os: parsed.os,
                created_at: at,
            }
        });
        d.created_at = d.created_at.min(at);
        widen(
            self.user_devices
                .entry((tenant, user, device))
                .or_insert((at, at)),
            at,
        );
        let l = self.locations.entry((tenant, location)).or_insert_with(|| {
            let geo_json = geo
                .zip(ip.parse::<IpAddr>().ok())
                .and_then(|(g, ip)| g.lookup(ip))
                .map(|v| v.to_string());
            LocationRow {
                ip_address: ip.to_string(),
                geo_json,
                created_at: at,
            }
        });
        l.created_at = l.created_at.min(at);
        widen(
            self.user_locations
                .entry((tenant, user, location))
                .or_insert((at, at)),
            at,
        );
        self.sessions
            .insert((tenant, session), (user, device, location));
    }

    fn refreshed(&mut self, e: &EventRecord, session: Uuid) {
        let at = self
            .refreshes
            .entry((e.tenant_id, session))
            .or_insert(e.recorded_at);
        *at = (*at).max(e.recorded_at);
    }
}

#[async_trait]
impl Projector for DevicesProjector {
    fn name(&self) -> &'static str {
        "devices"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "devices",
            "user_devices",
            "locations",
            "user_locations",
            "session_devices",
        ]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[EventRecord],
    ) -> Result<(), sqlx::Error> {
        let mut batch = Batch::default();
        let erased: Vec<&EventRecord> = events
            .iter()
            .filter(|e| e.aggregate_type == "user" && e.event_type == "UserErased")
            .collect();
        for e in events.iter().filter(|e| e.aggregate_type == "session") {
            let event: SessionEvent = serde_json::from_str(&e.payload)
                .map_err(|err| sqlx::Error::Decode(Box::new(err)))?;
            let session = Uuid::parse_str(&e.aggregate_id)
                .map_err(|err| sqlx::Error::Decode(Box::new(err)))?;
            match event {
                // An erased user's sign-ins leave no device or location behind.
                SessionEvent::SessionStarted { user_agent, ip, .. }
                    if user_agent == ERASED || ip == ERASED => {}
                SessionEvent::SessionStarted {
                    user_id,
                    user_agent,
                    ip,
                    ..
                } => batch.started(e, session, user_id.0, &user_agent, &ip, self.geo.as_deref()),
                SessionEvent::SessionRefreshed { .. } => batch.refreshed(e, session),
                SessionEvent::SessionRevoked { .. } => {}
            }
        }
        write(conn, batch).await?;
        for e in erased {
            let user = Uuid::parse_str(&e.aggregate_id)
                .map_err(|err| sqlx::Error::Decode(Box::new(err)))?;
            forget_user(conn, e.tenant_id, user).await?;
        }
        Ok(())
    }
}

/// Removes an erased user's devices and locations, leaving exactly what a rebuild
/// (which skips their shredded sign-ins) produces: shared rows stay, with `created_at`
/// recomputed from the remaining users; rows only they used go.
async fn forget_user(conn: &mut PgConnection, tenant: Uuid, user: Uuid) -> Result<(), sqlx::Error> {
    for (link, column, parent) in [
        ("user_devices", "device_id", "devices"),
        ("user_locations", "location_id", "locations"),
    ] {
        let ids: Vec<Uuid> = sqlx::query_scalar(&format!(
            "DELETE FROM {link} WHERE tenant_id = $1 AND user_id = $2 RETURNING {column}"
        ))
        .bind(tenant)
        .bind(user)
        .fetch_all(&mut *conn)
        .await?;
        sqlx::query(&format!(
            "DELETE FROM {parent} p WHERE p.tenant_id = $1 AND p.id = ANY($2)
               AND NOT EXISTS (SELECT 1 FROM {link} l WHERE l.tenant_id = p.tenant_id AND l.{column} = p.id)"
        ))
        .bind(tenant)
        .bind(&ids)
        .execute(&mut *conn)
        .await?;
        sqlx::query(&format!(
            "UPDATE {parent} p SET created_at = m.first
               FROM (SELECT {column} AS id, min(first_seen_at) AS first FROM {link}
                      WHERE tenant_id = $1 AND {column} = ANY($2) GROUP BY 1) m
              WHERE p.tenant_id = $1 AND p.id = m.id AND p.created_at <> m.first"
        ))
        .bind(tenant)
        .bind(&ids)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query("DELETE FROM session_devices WHERE tenant_id = $1 AND user_id = $2")
        .bind(tenant)
        .bind(user)
        .execute(conn)
        .await?;
    Ok(())
}

async fn write(conn: &mut PgConnection, b: Batch) -> Result<(), sqlx::Error> {
    if !b.devices.is_empty() {
        let (keys, rows): (Vec<_>, Vec<_>) = b.devices.into_iter().unzip();
        let (tenants, ids): (Vec<Uuid>, Vec<Uuid>) = keys.into_iter().unzip();
        let (mut names, mut oses, mut created) = (vec![], vec![], vec![]);
        for row in rows {
            names.push(row.name);
            oses.push(row.os);
            created.push(row.created_at);
        }
        sqlx::query(
            "INSERT INTO devices (tenant_id, id, name, os, created_at)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[])
             ON CONFLICT (tenant_id, id) DO UPDATE SET created_at = EXCLUDED.created_at
              WHERE EXCLUDED.created_at < devices.created_at",
        )
        .bind(tenants)
        .bind(ids)
        .bind(names)
        .bind(oses)
        .bind(created)
        .execute(&mut *conn)
        .await?;
    }
    if !b.locations.is_empty() {
        let (keys, rows): (Vec<_>, Vec<_>) = b.locations.into_iter().unzip();
        let (tenants, ids): (Vec<Uuid>, Vec<Uuid>) = keys.into_iter().unzip();
        let (mut ips, mut geos, mut created) = (vec![], vec![], vec![]);
        for row in rows {
            ips.push(row.ip_address);
            geos.push(row.geo_json);
            created.push(row.created_at);
        }
        sqlx::query(
            "INSERT INTO locations (tenant_id, id, ip_address, geo_json, created_at)
             SELECT t, i, ip, g::jsonb, c
               FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[]) AS r(t, i, ip, g, c)
             ON CONFLICT (tenant_id, id) DO UPDATE SET created_at = EXCLUDED.created_at
              WHERE EXCLUDED.created_at < locations.created_at",
        )
        .bind(tenants)
        .bind(ids)
        .bind(ips)
        .bind(geos)
        .bind(created)
        .execute(&mut *conn)
        .await?;
    }
    upsert_seen(conn, "user_devices", "device_id", b.user_devices).await?;
    upsert_seen(conn, "user_locations", "location_id", b.user_locations).await?;
    if !b.sessions.is_empty() {
        let (mut tenants, mut sessions, mut users, mut devices, mut locations) =
            (vec![], vec![], vec![], vec![], vec![]);
        for ((tenant, session), (user, device, location)) in b.sessions {
            tenants.push(tenant);
            sessions.push(session);
            users.push(user);
            devices.push(device);
            locations.push(location);
        }
        sqlx::query(
            "INSERT INTO session_devices (tenant_id, session_id, user_id, device_id, location_id)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[])
             ON CONFLICT (tenant_id, session_id) DO NOTHING",
        )
        .bind(tenants)
        .bind(sessions)
        .bind(users)
        .bind(devices)
        .bind(locations)
        .execute(&mut *conn)
        .await?;
    }
    if !b.refreshes.is_empty() {
        // After the inserts above, so a session started in this batch is found too.
        let (keys, ats): (Vec<_>, Vec<DateTime<Utc>>) = b.refreshes.into_iter().unzip();
        let (tenants, sessions): (Vec<Uuid>, Vec<Uuid>) = keys.into_iter().unzip();
        for (table, column) in [
            ("user_devices", "device_id"),
            ("user_locations", "location_id"),
        ] {
            // Several sessions may share a device: aggregate first, so each row is
            // updated once with the latest time.
            sqlx::query(&format!(
                "UPDATE {table} u SET last_seen_at = s.at
                   FROM (SELECT sd.tenant_id, sd.user_id, sd.{column} AS key, max(r.at) AS at
                           FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[]) AS r(tenant_id, session_id, at)
                           JOIN session_devices sd USING (tenant_id, session_id)
                          GROUP BY 1, 2, 3) s
                  WHERE u.tenant_id = s.tenant_id AND u.user_id = s.user_id AND u.{column} = s.key
                    AND u.last_seen_at < s.at"
            ))
            .bind(&tenants)
            .bind(&sessions)
            .bind(&ats)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Upserts (tenant, user, key) → first/last seen, widening existing rows.
async fn upsert_seen(
    conn: &mut PgConnection,
    table: &str,
    column: &str,
    rows: BTreeMap<(Uuid, Uuid, Uuid), Seen>,
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let (mut tenants, mut users, mut keys, mut firsts, mut lasts) =
        (vec![], vec![], vec![], vec![], vec![]);
    for ((tenant, user, key), (first, last)) in rows {
        tenants.push(tenant);
        users.push(user);
        keys.push(key);
        firsts.push(first);
        lasts.push(last);
    }
    sqlx::query(&format!(
        "INSERT INTO {table} (tenant_id, user_id, {column}, first_seen_at, last_seen_at)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::timestamptz[], $5::timestamptz[])
         ON CONFLICT (tenant_id, user_id, {column}) DO UPDATE
            SET first_seen_at = least({table}.first_seen_at, EXCLUDED.first_seen_at),
                last_seen_at = greatest({table}.last_seen_at, EXCLUDED.last_seen_at)"
    ))
    .bind(tenants)
    .bind(users)
    .bind(keys)
    .bind(firsts)
    .bind(lasts)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_tenant_scoped() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let ua = "curl/8.4.0";
        assert_eq!(device_id(a, ua), device_id(a, ua));
        assert_ne!(device_id(a, ua), device_id(b, ua));
        assert_ne!(device_id(a, ua), device_id(a, "curl/8.5.0"));
        // Device and location ids never collide for the same text.
        assert_ne!(device_id(a, "1.2.3.4"), location_id(a, "1.2.3.4"));
        // Pinned: changing the derivation would orphan every stored id.
        assert_eq!(
            device_id(Uuid::nil(), "curl/8.4.0").to_string(),
            "751ce4e3-3a55-86ed-af9a-04a2ac9d093d"
        );
        assert_eq!(device_id(a, ua).get_version_num(), 8);
    }
}
