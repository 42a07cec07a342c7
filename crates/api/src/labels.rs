//! Names next to ids in every DTO: a route gathers the ids its answer refers to, loads their
//! names with one query per kind, and fills the `…_name` fields from them.

use std::collections::HashMap;

use portcullis_app::App;
use portcullis_store::Named;

use crate::error::ApiResult;

#[derive(Default)]
pub struct Labels(HashMap<Named, HashMap<String, String>>);

impl Labels {
    /// The names of these ids, per kind.
    pub async fn load(state: &App, wanted: impl IntoIterator<Item = (Named, Vec<String>)>) -> ApiResult<Labels> {
        let mut by_kind: HashMap<Named, Vec<String>> = HashMap::new();
        for (kind, ids) in wanted {
            by_kind.entry(kind).or_default().extend(ids);
        }
        let mut out = HashMap::new();
        for (kind, ids) in by_kind {
            out.insert(kind, state.store.names_for(kind, &ids).await?);
        }
        Ok(Labels(out))
    }

    /// The name of one id (none when it names nothing, e.g. a deleted object).
    pub fn name(&self, kind: Named, id: &str) -> Option<String> {
        self.0.get(&kind).and_then(|m| m.get(id)).cloned()
    }

    /// The names of a list of ids, in order; a deleted object shows as its id.
    pub fn names(&self, kind: Named, ids: &[String]) -> Vec<String> {
        ids.iter().map(|id| self.name(kind, id).unwrap_or_else(|| id.clone())).collect()
    }
}
