//! One kind's table: its finished files scanned by DataFusion's Arrow IPC
//! reader, each with its wall-clock anchor, and the view the SQL sees (the
//! kind's columns, then `time`, filtered to `--since` / `--until`).
//!
//! The anchor differs per file (it is sampled when the sink opens a file),
//! so it cannot be one constant per table. Each file is a `PartitionedFile`
//! whose partition value is its anchor (null when it has none): the scan
//! appends that value as a column to every row of the file, the way it
//! would a `key=value` directory, without reading anything else. The view
//! turns it into `time = ts_ns + anchor` as `Timestamp(ns, "UTC")` and drops it.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{ArrowSource, FileGroup, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, ExprSchemable as _, TryCast};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{lit, DataFrame, SessionContext};
use futures::future::BoxFuture;

/// The column of every table holding a row's wall-clock time.
pub const TIME_COLUMN: &str = "time";

/// The scan's per-file column carrying the anchor; never visible in SQL.
const ANCHOR_COLUMN: &str = "__hostflow_wall_clock_anchor_ns";

/// One finished spool file of a table.
#[derive(Clone, Debug)]
pub struct SpoolFile {
    /// Absolute path.
    pub path: PathBuf,
    pub size: u64,
    /// UTC ns at `ts_ns` = 0, from the file's schema metadata.
    pub anchor_ns: Option<i64>,
}

/// The `[since, until)` range every table is filtered to, in UTC ns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub since: Option<i64>,
    pub until: Option<i64>,
}

/// `Timestamp(Nanosecond, "UTC")`.
pub fn utc_timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// The kind's columns, then `time`: the schema SQL sees.
pub fn view_schema(kind_schema: &Schema) -> SchemaRef {
    let mut fields: Vec<FieldRef> = kind_schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(TIME_COLUMN, utc_timestamp(), true)));
    Arc::new(Schema::new_with_metadata(fields, kind_schema.metadata().clone()))
}

/// The table SQL sees for one kind: its files with `time`, within `range`.
pub fn view(ctx: &SessionContext, kind_schema: &SchemaRef, files: &[SpoolFile], range: TimeRange) -> Result<DataFrame> {
    if files.is_empty() {
        let empty = MemTable::try_new(view_schema(kind_schema), vec![vec![]])?;
        return ctx.read_table(Arc::new(empty));
    }
    let scan = ctx.read_table(Arc::new(SpoolScan { kind_schema: Arc::clone(kind_schema), files: files.to_vec() }))?;
    // ts_ns is u64; a value past i64 (corrupt or synthetic) gives a null time.
    let ts = Expr::TryCast(TryCast::new(Box::new(column("ts_ns")), DataType::Int64));
    let time = (ts + column(ANCHOR_COLUMN)).cast_to(&utc_timestamp(), scan.schema())?.alias(TIME_COLUMN);
    let mut columns: Vec<Expr> = kind_schema.fields().iter().map(|field| column(field.name())).collect();
    columns.push(time);
    let mut frame = scan.select(columns)?;
    let bound = |ns: i64| lit(ScalarValue::TimestampNanosecond(Some(ns), Some("UTC".into())));
    if let Some(since) = range.since {
        frame = frame.filter(column(TIME_COLUMN).gt_eq(bound(since)))?;
    }
    if let Some(until) = range.until {
        frame = frame.filter(column(TIME_COLUMN).lt(bound(until)))?;
    }
    Ok(frame)
}

fn column(name: &str) -> Expr {
    Expr::Column(Column::from_name(name))
}

/// The files of one kind, each with its anchor as a partition value.
#[derive(Debug)]
struct SpoolScan {
    kind_schema: SchemaRef,
    files: Vec<SpoolFile>,
}

impl SpoolScan {
    fn table_schema(&self) -> TableSchema {
        let anchor = Arc::new(Field::new(ANCHOR_COLUMN, DataType::Int64, true));
        TableSchema::builder(Arc::clone(&self.kind_schema)).with_table_partition_cols(vec![anchor]).build()
    }
}

impl TableProvider for SpoolScan {
    fn schema(&self) -> SchemaRef {
        Arc::clone(self.table_schema().table_schema())
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    // The trait is declared with `#[async_trait]`; this is the signature it
    // expands to, written out because planning the scan awaits nothing (and
    // so this crate needs no async-trait for one method).
    fn scan<'life0, 'life1, 'life2, 'life3, 'async_trait>(
        &'life0 self,
        state: &'life1 dyn Session,
        projection: Option<&'life2 Vec<usize>>,
        _filters: &'life3 [Expr],
        limit: Option<usize>,
    ) -> BoxFuture<'async_trait, Result<Arc<dyn ExecutionPlan>>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        'life3: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(std::future::ready(self.plan(state, projection, limit)))
    }
}

impl SpoolScan {
    /// The scan: every file once, its anchor appended to each of its rows.
    fn plan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut files = Vec::with_capacity(self.files.len());
        for file in &self.files {
            let location = datafusion::object_store::path::Path::from_absolute_path(&file.path)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            let mut partitioned = PartitionedFile::new(String::new(), file.size)
                .with_partition_values(vec![ScalarValue::Int64(file.anchor_ns)]);
            partitioned.object_meta.location = location;
            files.push(partitioned);
        }
        // Contiguous runs of files per partition, as a listing table does.
        let n_groups = state.config().target_partitions().clamp(1, files.len().max(1));
        let per_group = files.len().div_ceil(n_groups).max(1);
        let groups: Vec<FileGroup> = files.chunks(per_group).map(|chunk| FileGroup::new(chunk.to_vec())).collect();
        let source = Arc::new(ArrowSource::new_file_source(self.table_schema()));
        let config = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), source)
            .with_file_groups(groups)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}
