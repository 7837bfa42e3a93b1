//! What the dashboard's overview shows, computed in the database (a few grouped queries, so
//! the page costs the same with ten or ten thousand certificates).

use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

use super::{Store, StoreError};
use crate::model::{EXPIRING_WINDOW_DAYS, Timestamp};

/// How far ahead the expiry timeline looks, and how far back the activity goes (days).
pub const TIMELINE_DAYS: i64 = 90;
pub const ACTIVITY_DAYS: i64 = 30;

/// Certificates by status (as `GET /api/v1/certificates?status=` counts them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct StatusCounts {
    pub total: i64,
    pub pending: i64,
    pub active: i64,
    /// Issued, expiring within 30 days.
    pub expiring: i64,
    pub expired: i64,
    pub revoked: i64,
    pub failed: i64,
}

/// Issued certificates whose notAfter falls on day `day` (0 = the next 24 hours).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ExpiryDay {
    pub day: i64,
    pub count: i64,
}

/// Issuance and renewal jobs that ended on day `day` (0 = today, -1 = yesterday…).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct ActivityDay {
    pub day: i64,
    pub issued: i64,
    pub renewed: i64,
    pub failed: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct AgentCounts {
    pub total: i64,
    pub online: i64,
    pub offline: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct OverviewCounts {
    pub certificates: StatusCounts,
    /// Days with expiries in the next 90 days (days without any are left out).
    pub expiry_timeline: Vec<ExpiryDay>,
    /// The last 30 days, oldest first, every day present.
    pub activity: Vec<ActivityDay>,
    pub agents: AgentCounts,
    /// Jobs waiting for a runner or for their agent.
    pub jobs_pending: i64,
}

fn day_start(now: Timestamp) -> i64 {
    now.0 - now.0.rem_euclid(86_400)
}

impl Store {
    pub async fn overview_counts(&self, now: Timestamp) -> Result<OverviewCounts, StoreError> {
        let soon = now.plus_days(EXPIRING_WINDOW_DAYS);
        let row = sqlx::query(
            "SELECT COUNT(*), \
               COALESCE(SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END), 0), \
               COALESCE(SUM(CASE WHEN state = 'issued' AND not_after > $2 THEN 1 ELSE 0 END), 0), \
               COALESCE(SUM(CASE WHEN state = 'issued' AND not_after > $1 AND not_after <= $2 THEN 1 ELSE 0 END), 0), \
               COALESCE(SUM(CASE WHEN state = 'issued' AND not_after <= $1 THEN 1 ELSE 0 END), 0), \
               COALESCE(SUM(CASE WHEN state = 'revoked' THEN 1 ELSE 0 END), 0), \
               COALESCE(SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END), 0) \
             FROM certificates",
        )
        .bind(now.0)
        .bind(soon.0)
        .fetch_one(&self.pool)
        .await?;
        let certificates = StatusCounts {
            total: row.try_get(0)?,
            pending: row.try_get(1)?,
            active: row.try_get(2)?,
            expiring: row.try_get(3)?,
            expired: row.try_get(4)?,
            revoked: row.try_get(5)?,
            failed: row.try_get(6)?,
        };

        let rows = sqlx::query(
            "SELECT (not_after - $1) / 86400 AS d, COUNT(*) FROM certificates \
             WHERE state = 'issued' AND not_after > $1 AND not_after <= $2 GROUP BY d ORDER BY d",
        )
        .bind(now.0)
        .bind(now.plus_days(TIMELINE_DAYS).0)
        .fetch_all(&self.pool)
        .await?;
        let expiry_timeline = rows
            .iter()
            .map(|r| {
                Ok(ExpiryDay {
                    day: r.try_get(0)?,
                    count: r.try_get(1)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;

        let today = day_start(now);
        let first = today - (ACTIVITY_DAYS - 1) * 86_400;
        let rows = sqlx::query(
            "SELECT (updated_at - $1) / 86400 AS d, kind, state, COUNT(*) FROM jobs \
             WHERE kind IN ('issuance', 'renewal') AND state IN ('completed', 'failed') \
             AND updated_at >= $1 GROUP BY d, kind, state",
        )
        .bind(first)
        .fetch_all(&self.pool)
        .await?;
        let mut activity: Vec<ActivityDay> = (0..ACTIVITY_DAYS)
            .map(|i| ActivityDay {
                day: i - (ACTIVITY_DAYS - 1),
                ..Default::default()
            })
            .collect();
        for r in &rows {
            let d: i64 = r.try_get(0)?;
            let kind: String = r.try_get(1)?;
            let state: String = r.try_get(2)?;
            let n: i64 = r.try_get(3)?;
            let Some(slot) = usize::try_from(d).ok().and_then(|i| activity.get_mut(i)) else {
                continue;
            };
            match (kind.as_str(), state.as_str()) {
                (_, "failed") => slot.failed += n,
                ("renewal", _) => slot.renewed += n,
                _ => slot.issued += n,
            }
        }

        // Agents and pending jobs as the metrics endpoint counts them.
        let fleet = self.fleet_counts(now).await?;
        Ok(OverviewCounts {
            certificates,
            expiry_timeline,
            activity,
            agents: AgentCounts {
                total: fleet.agents,
                online: fleet.agents_online,
                offline: fleet.agents - fleet.agents_online,
            },
            jobs_pending: fleet.jobs_pending,
        })
    }
}
