//! Assembly: what `apiary run`, `apiary check` and hot reload build from
//! a pipeline's configuration (engine, lookups, plugins, outputs and the
//! tables each holds), built in one place so the three cannot disagree.

use std::path::Path;
use std::sync::Arc;

use crate::config::PipelineConfig;
use crate::lookup::Lookups;
use crate::model::TableSchema;
use crate::output::{self, Output};
use crate::plugin::{Engine, PluginSet};
use crate::store::{self, SqlStore};

/// A pipeline's parts, before any record is read.
pub struct Assembly {
    /// Compiles and instantiates plugins, with the configured limits.
    pub engine: Engine,
    /// Dimension tables served to plugins.
    pub lookups: Arc<Lookups>,
    /// The plugins in the plugin directory, and the files rejected.
    pub plugins: PluginSet,
    /// Side outputs, checked against the plugins' tables.
    pub outputs: Vec<Arc<dyn Output>>,
    /// The tables the checkpoint store holds: those no output routes.
    pub store_tables: Vec<Arc<TableSchema>>,
}

impl Assembly {
    /// Builds a pipeline's parts from `config`: loads its plugins, builds
    /// its outputs and checks their routes and the configured indexes
    /// against the plugins' tables.
    pub fn build(config: &PipelineConfig) -> anyhow::Result<Self> {
        let engine = Engine::with_limits(config.plugins.clone())?;
        let lookups = Arc::new(Lookups::load(&config.lookup, config.hbase.as_ref())?);
        let plugins = PluginSet::load_dir(&engine, &config.plugins.dir, &lookups)?;
        let outputs = output::from_config(config)?;
        let store_tables = routes(&plugins, &outputs)?;
        for index in &config.sink.sql.index {
            store::check_index(index, &store_tables)?;
        }
        Ok(Self {
            engine,
            lookups,
            plugins,
            outputs,
            store_tables,
        })
    }

    /// Connects to the checkpoint store and creates or checks its tables
    /// and indexes.
    pub async fn open_store(&self, config: &PipelineConfig) -> anyhow::Result<SqlStore> {
        let store = SqlStore::connect(&config.sink.sql).await?;
        // A dead letter holds up to a whole record, its reason and its place.
        let record = config.batch.max_record_bytes;
        let dead_letter = record.saturating_add(crate::text::MAX_REASON_BYTES + 1024);
        if let Some(most) = store.row_limits().row_bytes
            && dead_letter > most
        {
            anyhow::bail!(
                "batch.max-record-bytes = {record} is more than a dead letter may hold on this \
                 sink: its statements take at most {most} bytes (MySQL's max_allowed_packet); \
                 lower it or raise the server's"
            );
        }
        store.prepare_tables(&self.store_tables).await?;
        store
            .prepare_indexes(&config.sink.sql.index, &self.store_tables)
            .await?;
        Ok(store)
    }
}

/// What a new plugin set changes in the store: checks the outputs' routes
/// against its tables and returns the tables the store must hold.
pub fn routes(
    plugins: &PluginSet,
    outputs: &[Arc<dyn Output>],
) -> anyhow::Result<Vec<Arc<TableSchema>>> {
    let tables: Vec<_> = plugins.tables().cloned().collect();
    for output in outputs {
        output.check(&tables)?;
    }
    Ok(output::store_tables(&tables, outputs))
}

/// Loads the plugins in `dir`, logging each one and each rejected file.
pub fn load_plugins(
    engine: &Engine,
    dir: &Path,
    lookups: &Arc<Lookups>,
) -> anyhow::Result<PluginSet> {
    let plugins = PluginSet::load_dir(engine, dir, lookups)?;
    log_plugins(&plugins);
    Ok(plugins)
}

/// Logs the plugins of a set, and its rejected files.
pub fn log_plugins(plugins: &PluginSet) {
    for rejected in &plugins.rejected {
        tracing::error!("{rejected}");
    }
    for p in &plugins.parsers {
        tracing::info!(plugin = %p.info.name, version = %p.info.version, contract = %p.pre.contract(), topics = ?p.info.topics, "loaded parser");
    }
    for r in &plugins.rules {
        let consumes: Vec<String> = r.info.consumes.iter().map(ToString::to_string).collect();
        tracing::info!(plugin = %r.info.name, version = %r.info.version, contract = %r.pre.contract(), ?consumes, params = ?r.params, "loaded rule");
    }
}
