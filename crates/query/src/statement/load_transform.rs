//! Transforming loads: `COPY INTO t (a, b) FROM (SELECT $1, UPPER($2) FROM @landing)`.
//!
//! `$n` is the n-th field of a CSV record (as text) or the n-th column of a Parquet or JSON
//! file; `$1:name` is the column `name` of a Parquet or JSON file. Each select item is a SQL
//! expression over them, planned by DataFusion with every function a query has, and evaluated on
//! each batch the reader delivers. Its result is converted to the target column's type as a
//! file's value would be, so a value that does not convert is a bad record naming its line and
//! column, and `ON_ERROR`, load history and rejected rows work as for any load. An expression
//! that fails on a batch (a cast inside it, say) is evaluated again row by row, to name the
//! record at fault.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, new_null_array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::sql::sqlparser::ast::helpers::stmt_data_loading::StageLoadSelectItemKind;
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, Ident, SelectItem, Value, visit_expressions_mut,
};
use strata_storage::load::{self, CsvOptions, FileFormat, RowError, SourceBatch, SourceFile};
use strata_storage::{ColumnDef, run_cpu};

use crate::error::{Error, Result};
use crate::parser::normalize;
use crate::session::Session;

/// A reference to a column of the file.
#[derive(Debug, Clone)]
enum FileColumn {
    /// `$n`, from 1.
    Position(usize),
    /// `$1:name`.
    Named(String),
}

/// One select item: a file column, or an expression over file columns.
#[derive(Debug, Clone)]
enum Item {
    Column(FileColumn),
    Expr(Box<SqlExpr>),
}

/// The select list of a transforming load, with the table column each item fills.
#[derive(Debug, Clone)]
pub(crate) struct Transform {
    items: Vec<Item>,
    /// Per table column: the item that fills it, if any.
    sources: Vec<Option<usize>>,
    /// Per table column: its default, as text.
    defaults: Vec<Option<String>>,
}

impl Transform {
    /// The transform of `items` into the table's `columns` (or those of `into`, in order).
    pub(crate) fn new(
        items: &[StageLoadSelectItemKind],
        into: Option<&[Ident]>,
        columns: &[ColumnDef],
    ) -> Result<Self> {
        let items: Vec<Item> = items.iter().map(item).collect::<Result<_>>()?;
        let targets: Vec<usize> = match into {
            Some(names) => names
                .iter()
                .map(|n| {
                    let name = normalize(n);
                    columns.iter().position(|c| c.name == name).ok_or_else(|| {
                        Error::Plan(format!("COPY INTO: the table has no column '{name}'"))
                    })
                })
                .collect::<Result<_>>()?,
            None => (0..columns.len()).collect(),
        };
        if targets.len() != items.len() {
            return Err(Error::Plan(format!(
                "COPY INTO: {} target columns but the SELECT gives {} values",
                targets.len(),
                items.len()
            )));
        }
        let mut sources = vec![None; columns.len()];
        for (i, target) in targets.iter().enumerate() {
            if sources[*target].replace(i).is_some() {
                return Err(Error::Plan(format!(
                    "COPY INTO: column '{}' is named twice",
                    columns[*target].name
                )));
            }
        }
        let transform = Self {
            items,
            sources,
            defaults: columns.iter().map(|c| c.default.clone()).collect(),
        };
        if transform.width() > MAX_FILE_COLUMN {
            return Err(Error::Plan(format!(
                "${}: file columns are $1 to ${MAX_FILE_COLUMN}",
                transform.width()
            )));
        }
        Ok(transform)
    }

    /// The highest `$n` the items use.
    fn width(&self) -> usize {
        let mut width = 1;
        for item in &self.items {
            match item {
                Item::Column(FileColumn::Position(n)) => width = width.max(*n),
                Item::Column(FileColumn::Named(_)) => {}
                Item::Expr(e) => {
                    let mut e = e.as_ref().clone();
                    let _ = visit_expressions_mut(&mut e, |e| {
                        if let Some(n) = position_of(e) {
                            width = width.max(n);
                        }
                        std::ops::ControlFlow::<()>::Continue(())
                    });
                }
            }
        }
        width
    }

    /// Plans the transform for one file: the schema it is read in and the expressions.
    pub(crate) async fn for_file(
        &self,
        session: &Session,
        source: &SourceFile,
        format: &FileFormat,
        compression: load::Compression,
    ) -> Result<FileTransform> {
        let (fields, csv) = match format {
            FileFormat::Csv(options) => {
                let fields: Vec<Field> = (1..=self.width())
                    .map(|n| Field::new(format!("${n}"), DataType::Utf8, true))
                    .collect();
                // The select list says which fields matter; records may have more or fewer.
                let csv = CsvOptions {
                    error_on_column_count_mismatch: false,
                    ..options.clone()
                };
                (fields, csv)
            }
            other => {
                let data = match compression {
                    load::Compression::None => source.open().await?,
                    codec => source.open().await?.decompress(codec),
                };
                let (src, fmt) = (source.clone(), other.clone());
                let fields = run_cpu(move || load::file_columns(&src, data, &fmt)).await??;
                let fields: Vec<Field> = fields
                    .into_iter()
                    .map(|f| Field::new(f.name(), crate::types::storage_type(f.data_type()), true))
                    .collect();
                (fields, CsvOptions::default())
            }
        };
        let schema: SchemaRef = Arc::new(Schema::new(fields));
        let name_of = |column: &FileColumn| -> Result<String> {
            let found = match column {
                FileColumn::Position(n) => schema.fields().get(n - 1),
                FileColumn::Named(name) => schema
                    .fields()
                    .iter()
                    .find(|f| f.name().eq_ignore_ascii_case(name)),
            };
            found.map(|f| f.name().clone()).ok_or_else(|| {
                Error::Plan(format!(
                    "{}: the file has no column {}",
                    source.display(),
                    match column {
                        FileColumn::Position(n) => format!("${n}"),
                        FileColumn::Named(name) => format!("$1:{name}"),
                    }
                ))
            })
        };
        let df_schema = DFSchema::try_from(Arc::clone(&schema))?;
        let state = session.context().state();
        let mut exprs = Vec::with_capacity(self.sources.len());
        let mut texts = Vec::with_capacity(self.sources.len());
        for (source_item, default) in self.sources.iter().zip(&self.defaults) {
            // The expression as the user wrote it, for messages.
            let mut written = None;
            let text = match source_item.map(|i| &self.items[i]) {
                Some(Item::Column(column)) => Ident::with_quote('"', name_of(column)?).to_string(),
                Some(Item::Expr(e)) => {
                    written = Some(e.to_string());
                    let mut e = e.as_ref().clone();
                    let mut missing = None;
                    let _ = visit_expressions_mut(&mut e, |e| {
                        if let Some(n) = position_of(e) {
                            match name_of(&FileColumn::Position(n)) {
                                Ok(name) => *e = SqlExpr::Identifier(Ident::with_quote('"', name)),
                                Err(err) => missing = Some(err),
                            }
                        }
                        std::ops::ControlFlow::<()>::Continue(())
                    });
                    if let Some(err) = missing {
                        return Err(err);
                    }
                    e.to_string()
                }
                None => match default {
                    Some(value) => format!("'{}'", value.replace('\'', "''")),
                    None => "NULL".to_string(),
                },
            };
            let logical = state.create_logical_expr(&text, &df_schema)?;
            exprs.push(state.create_physical_expr(logical, &df_schema)?);
            texts.push(written.unwrap_or(text));
        }
        Ok(FileTransform {
            source_schema: schema,
            exprs,
            texts,
            csv,
        })
    }
}

/// The highest `$n` a transforming load may name (a CSV record is read as that many fields).
const MAX_FILE_COLUMN: usize = 10_000;

/// `$n` as an expression (sqlparser reads it as a placeholder).
fn position_of(e: &SqlExpr) -> Option<usize> {
    match e {
        SqlExpr::Value(v) => match &v.value {
            Value::Placeholder(p) => p.strip_prefix('$')?.parse().ok().filter(|n| *n > 0),
            _ => None,
        },
        _ => None,
    }
}

fn item(item: &StageLoadSelectItemKind) -> Result<Item> {
    match item {
        StageLoadSelectItemKind::StageLoadSelectItem(i) => {
            let number = usize::try_from(i.file_col_num)
                .ok()
                .filter(|n| (1..=MAX_FILE_COLUMN).contains(n))
                .ok_or_else(|| {
                    Error::Plan(format!(
                        "${}: file columns are $1 to ${MAX_FILE_COLUMN}",
                        i.file_col_num
                    ))
                })?;
            Ok(Item::Column(match &i.element {
                Some(name) if number == 1 => FileColumn::Named(name.value.clone()),
                Some(name) => {
                    return Err(Error::Plan(format!(
                        "${number}:{name}: name a column of the file as $1:{name}"
                    )));
                }
                None => FileColumn::Position(number),
            }))
        }
        StageLoadSelectItemKind::SelectItem(SelectItem::UnnamedExpr(e))
        | StageLoadSelectItemKind::SelectItem(SelectItem::ExprWithAlias { expr: e, .. }) => {
            Ok(Item::Expr(Box::new(e.clone())))
        }
        StageLoadSelectItemKind::SelectItem(other) => Err(Error::Unsupported(format!(
            "{other} in a transforming load: select $1, $2, ... or expressions of them"
        ))),
    }
}

/// A [`Transform`] planned for one file.
#[derive(Debug)]
pub(crate) struct FileTransform {
    /// The schema the file is read in: `$1..$n` as text for CSV, the file's columns otherwise.
    pub(crate) source_schema: SchemaRef,
    /// One expression per table column.
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// The expressions as written, for messages.
    texts: Vec<String>,
    /// How text is read as dates and timestamps.
    pub(crate) csv: CsvOptions,
}

impl FileTransform {
    /// `batch` (rows of the file) transformed into rows of `table`; rows whose values do not
    /// convert join the batch's bad records.
    pub(crate) fn apply(
        &self,
        batch: SourceBatch,
        table: &SchemaRef,
    ) -> strata_storage::Result<SourceBatch> {
        let SourceBatch {
            rows,
            lines,
            mut errors,
        } = batch;
        let (columns, lines) = match self.evaluate(&rows) {
            Ok(columns) => (columns, lines),
            Err(_) => self.row_by_row(&rows, lines, table, &mut errors)?,
        };
        let (rows, lines) = load::conform(&columns, table, &self.csv, lines, &mut errors)?;
        errors.sort_by_key(|e| e.line);
        Ok(SourceBatch {
            rows,
            lines,
            errors,
        })
    }

    fn evaluate(&self, rows: &RecordBatch) -> datafusion::error::Result<Vec<ArrayRef>> {
        self.exprs
            .iter()
            .map(|e| e.evaluate(rows)?.into_array(rows.num_rows()))
            .collect()
    }

    /// Evaluates each row alone: the rows that fail become bad records naming the column and
    /// the error; the others are kept.
    fn row_by_row(
        &self,
        rows: &RecordBatch,
        lines: Vec<u64>,
        table: &SchemaRef,
        errors: &mut Vec<RowError>,
    ) -> strata_storage::Result<(Vec<ArrayRef>, Vec<u64>)> {
        let mut kept: Vec<Vec<ArrayRef>> = vec![Vec::new(); self.exprs.len()];
        let mut kept_lines = Vec::new();
        for (r, line) in lines.into_iter().enumerate() {
            let row = rows.slice(r, 1);
            let mut values = Vec::with_capacity(self.exprs.len());
            let mut failed = None;
            for (c, e) in self.exprs.iter().enumerate() {
                match e.evaluate(&row).and_then(|v| v.into_array(1)) {
                    Ok(v) => values.push(v),
                    Err(err) => {
                        failed = Some((c, err));
                        break;
                    }
                }
            }
            match failed {
                Some((c, err)) => errors.push(RowError {
                    line: Some(line),
                    column: Some(table.field(c).name().clone()),
                    value: None,
                    reason: format!(
                        "{} failed: {}",
                        self.texts[c],
                        crate::error::Error::from(err)
                            .to_string()
                            .trim_start_matches("Arrow error: ")
                    ),
                }),
                None => {
                    for (slot, v) in kept.iter_mut().zip(values) {
                        slot.push(v);
                    }
                    kept_lines.push(line);
                }
            }
        }
        let columns = kept
            .into_iter()
            .enumerate()
            .map(|(c, parts)| {
                if parts.is_empty() {
                    // No row survived: an empty column of the type the expression gives.
                    let data_type = self.exprs[c]
                        .data_type(&self.source_schema)
                        .unwrap_or(DataType::Null);
                    return Ok(new_null_array(&data_type, 0));
                }
                let parts: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
                arrow::compute::concat(&parts)
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok((columns, kept_lines))
    }
}
