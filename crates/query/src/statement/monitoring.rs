//! The gauges of `/metrics` that are read off the warehouse when it is scraped, not counted
//! as events happen: how stale each materialized view is, each table's freshness lag against
//! its SLA, the query memory pool and the scan cache. The counters are in
//! [`crate::telemetry`].

use metrics::gauge;

use crate::catalog::{materialized_view, tables};
use crate::error::Result;
use crate::session::SessionPlanner;
use crate::telemetry::{
    FRESHNESS_BREACHES, FRESHNESS_LAG, MEMORY_RESERVED, MV_STALENESS, SCAN_CACHE_BYTES,
};
use crate::warehouse::Warehouse;

/// Sets the gauges read off `warehouse` (call before rendering the metrics).
pub async fn observe(warehouse: &Warehouse) -> Result<()> {
    gauge!(MEMORY_RESERVED).set(warehouse.runtime().memory_pool.reserved() as f64);
    gauge!(SCAN_CACHE_BYTES).set(warehouse.scan_cache().used() as f64);
    for (name, definition, _) in materialized_view::list(warehouse).await? {
        let staleness =
            materialized_view::staleness_seconds(warehouse, &SessionPlanner, &definition).await?;
        gauge!(MV_STALENESS, "view" => name.join(".")).set(staleness.unwrap_or(0.0));
    }
    let mut breaches = 0u32;
    for table in tables::freshness(warehouse, tables::History::WithSla).await? {
        if table.sla_seconds.is_none() {
            continue;
        }
        breaches += u32::from(table.breach);
        gauge!(FRESHNESS_LAG, "table" => table.table).set(table.lag_seconds as f64);
    }
    gauge!(FRESHNESS_BREACHES).set(f64::from(breaches));
    Ok(())
}
