//! The HTTP adapter's state: the application (every use case and its state) plus what only
//! HTTP needs (request metrics by route). Dereferences to [`App`], so handlers reach the
//! application as `state.store`, `state.now()`, or pass `&state` to a use case.

use std::sync::Arc;

pub use portcullis_app::{App, AuthSettings, ChangeSettings, Clock, LiveSession, LiveSessions, SystemClock};

use crate::metrics::HttpMetrics;

#[derive(Clone)]
pub struct AppState {
    pub app: App,
    pub http: Arc<HttpMetrics>,
}

impl AppState {
    pub fn new(app: App) -> Self {
        let http = Arc::new(HttpMetrics::new(&app.metrics));
        AppState { app, http }
    }
}

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.app
    }
}
