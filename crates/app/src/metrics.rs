//! The metrics registry (Prometheus, OpenMetrics text) and the counters the use cases bump.
//! Front ends register their own families (HTTP requests by route, …) into the same registry.

use std::sync::Mutex;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::{Metric, Registry};

pub struct Metrics {
    registry: Mutex<Registry>,
    pub logins_failed: Counter,
    pub checkouts: Counter,
    pub directory_errors: Counter,
    pub archive_errors: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let logins_failed = Counter::default();
        registry.register("logins_failed", "Failed sign-in attempts", logins_failed.clone());
        let checkouts = Counter::default();
        registry.register("credential_checkouts", "Credentials checked out", checkouts.clone());
        let directory_errors = Counter::default();
        registry.register(
            "directory_errors",
            "Directory sign-ins and synchronisations that failed for the directory's sake",
            directory_errors.clone(),
        );
        let archive_errors = Counter::default();
        registry.register(
            "archive_errors",
            "Recording copies to the archive that failed (retried; the local file stays)",
            archive_errors.clone(),
        );
        Metrics { registry: Mutex::new(registry), logins_failed, checkouts, directory_errors, archive_errors }
    }

    /// Names the node these metrics are of (`portcullis_node_info{node="…"} 1`), so that
    /// several nodes' metrics can be told apart whatever the scraper's labels.
    pub fn node(&self, name: &str) {
        let info = prometheus_client::metrics::info::Info::new(vec![("node".to_owned(), name.to_owned())]);
        self.registry.lock().unwrap_or_else(|p| p.into_inner()).register("node", "This Portcullis node", info);
    }

    /// Adds a front end's metric to the registry.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry.lock().unwrap_or_else(|p| p.into_inner()).register(name, help, metric);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
