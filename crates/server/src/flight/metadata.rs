//! What client object browsers ask for: catalogs (Strata databases), schemas, tables with
//! their Arrow schemas, table types, keys, server capabilities (`GetSqlInfo`) and SQL types
//! (`GetXdbcTypeInfo`). DBeaver, Tableau and Superset build their trees from these, and the
//! JDBC driver reads most `GetSqlInfo` values when it connects.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, Int32Builder, RecordBatch, StringBuilder, UInt8Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow_flight::sql::metadata::{
    GetCatalogsBuilder, GetDbSchemasBuilder, GetTablesBuilder, SqlInfoData, SqlInfoDataBuilder,
    XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    Nullable, Searchable, SqlInfo, SqlNullOrdering, SqlSupportedCaseSensitivity,
    SqlSupportedTransaction, SupportedSqlGrammar, XdbcDataType,
};
use datafusion::catalog::CatalogProviderList;
use strata_query::Session;
use strata_query::{Comments, Constraint};
use tonic::Status;

use crate::flight::wire::{WireTypes, wire_schema};

/// Table type of warehouse tables.
pub(crate) const TABLE: &str = "TABLE";
/// Table type of `system.*` and `information_schema.*`.
pub(crate) const SYSTEM_TABLE: &str = "SYSTEM TABLE";

/// Schemas whose tables are the engine's own.
fn is_system_schema(schema: &str) -> bool {
    schema == "system" || schema == "information_schema"
}

/// Rows of `GetCatalogs`.
pub(crate) fn catalogs(
    session: &Session,
    mut builder: GetCatalogsBuilder,
) -> Result<RecordBatch, Status> {
    let mut names = session.context().catalog_names();
    names.sort();
    for name in names {
        builder.append(name);
    }
    builder.build().map_err(|e| Status::internal(e.to_string()))
}

/// Rows of `GetDbSchemas` (the builder applies the client's filters).
pub(crate) fn db_schemas(
    session: &Session,
    mut builder: GetDbSchemasBuilder,
) -> Result<RecordBatch, Status> {
    let list = Arc::clone(session.context().state().catalog_list());
    for (catalog, schema) in schema_names(list.as_ref()) {
        builder.append(catalog, schema);
    }
    builder.build().map_err(|e| Status::internal(e.to_string()))
}

/// Field (and schema) metadata key of a comment, which the Flight SQL JDBC driver and ADBC show
/// as a column's `REMARKS`.
pub(crate) const REMARKS: &str = "ARROW:FLIGHT:SQL:REMARKS";

/// Rows of `GetTables`, with each table's Arrow schema (as sent on the wire) when asked; the
/// schema carries the table's and its columns' comments as [`REMARKS`].
pub(crate) async fn tables(
    session: &Session,
    mut builder: GetTablesBuilder,
) -> Result<RecordBatch, Status> {
    let list = Arc::clone(session.context().state().catalog_list());
    let comments = if builder.include_schema() {
        strata_query::comments(session.warehouse())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
    } else {
        Default::default()
    };
    for (catalog_name, schema_name) in schema_names(list.as_ref()) {
        let Some(schema) = list
            .catalog(&catalog_name)
            .and_then(|c| c.schema(&schema_name))
        else {
            continue;
        };
        let kind = if is_system_schema(&schema_name) {
            SYSTEM_TABLE
        } else {
            TABLE
        };
        let mut names = schema.table_names();
        names.sort();
        for name in names {
            let table_schema = if builder.include_schema() {
                match schema.table(&name).await {
                    Ok(Some(t)) => with_remarks(
                        &wire_schema(&t.schema(), WireTypes::Classic),
                        comments.get(&[catalog_name.clone(), schema_name.clone(), name.clone()]),
                    ),
                    Ok(None) => continue,
                    Err(e) => return Err(Status::internal(e.to_string())),
                }
            } else {
                Arc::new(Schema::empty())
            };
            builder
                .append(&catalog_name, &schema_name, &name, kind, &table_schema)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
    }
    builder.build().map_err(|e| Status::internal(e.to_string()))
}

/// `schema` with `comments` as [`REMARKS`] metadata on the schema and its fields.
fn with_remarks(schema: &SchemaRef, comments: Option<&Comments>) -> SchemaRef {
    let Some(comments) = comments else {
        return Arc::clone(schema);
    };
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match comments.columns.get(f.name()) {
            Some(c) => {
                let mut metadata = f.metadata().clone();
                metadata.insert(REMARKS.to_string(), c.clone());
                f.as_ref().clone().with_metadata(metadata)
            }
            None => f.as_ref().clone(),
        })
        .collect();
    let mut metadata = schema.metadata().clone();
    if let Some(c) = &comments.object {
        metadata.insert(REMARKS.to_string(), c.clone());
    }
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

fn schema_names(list: &dyn CatalogProviderList) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut catalogs = list.catalog_names();
    catalogs.sort();
    for catalog in catalogs {
        if let Some(c) = list.catalog(&catalog) {
            let mut schemas = c.schema_names();
            schemas.sort();
            out.extend(schemas.into_iter().map(|s| (catalog.clone(), s)));
        }
    }
    out
}

/// Schema of `GetPrimaryKeys` results (Flight SQL specification).
pub(crate) fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// Schema of `GetImportedKeys`, `GetExportedKeys` and `GetCrossReference` results.
pub(crate) fn foreign_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

/// Server capabilities for `GetSqlInfo`. The JDBC driver reads nearly every id when it
/// connects and fails on a missing boolean or integer, so all of them are present.
pub(crate) static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Strata");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, true);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    b.append(SqlInfo::SqlDdlCatalog, true);
    b.append(SqlInfo::SqlDdlSchema, true);
    b.append(SqlInfo::SqlDdlTable, true);
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    b.append(SqlInfo::SqlKeywords, KEYWORDS);
    b.append(SqlInfo::SqlNumericFunctions, NUMERIC_FUNCTIONS);
    b.append(SqlInfo::SqlStringFunctions, STRING_FUNCTIONS);
    b.append(
        SqlInfo::SqlSystemFunctions,
        &["current_database", "current_schema", "version"][..],
    );
    b.append(SqlInfo::SqlDatetimeFunctions, DATETIME_FUNCTIONS);
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlExtraNameCharacters, "");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    b.append(SqlInfo::SqlSupportedGroupBy, 0b11i32);
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.append(
        SqlInfo::SqlSupportedGrammar,
        1i32 << SupportedSqlGrammar::SqlCoreGrammar as i32,
    );
    b.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
    b.append(SqlInfo::SqlOuterJoinsSupportLevel, 2i32);
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlProcedureTerm, "procedure");
    b.append(SqlInfo::SqlCatalogTerm, "database");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlSchemasSupportedActions, 0b111i32);
    b.append(SqlInfo::SqlCatalogsSupportedActions, 0b111i32);
    b.append(SqlInfo::SqlSupportedPositionedCommands, 0i32);
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    b.append(SqlInfo::SqlSupportedSubqueries, 0b1111i32);
    b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    b.append(SqlInfo::SqlSupportedUnions, 0b11i32);
    for limit in [
        SqlInfo::SqlMaxBinaryLiteralLength,
        SqlInfo::SqlMaxCharLiteralLength,
        SqlInfo::SqlMaxColumnNameLength,
        SqlInfo::SqlMaxColumnsInGroupBy,
        SqlInfo::SqlMaxColumnsInIndex,
        SqlInfo::SqlMaxColumnsInOrderBy,
        SqlInfo::SqlMaxColumnsInSelect,
        SqlInfo::SqlMaxColumnsInTable,
        SqlInfo::SqlMaxConnections,
        SqlInfo::SqlMaxCursorNameLength,
        SqlInfo::SqlMaxIndexLength,
        SqlInfo::SqlDbSchemaNameLength,
        SqlInfo::SqlMaxProcedureNameLength,
        SqlInfo::SqlMaxCatalogNameLength,
        SqlInfo::SqlMaxRowSize,
        SqlInfo::SqlMaxStatementLength,
        SqlInfo::SqlMaxStatements,
        SqlInfo::SqlMaxTableNameLength,
        SqlInfo::SqlMaxTablesInSelect,
        SqlInfo::SqlMaxUsernameLength,
    ] {
        // 0: no limit known.
        b.append(limit, 0i64);
    }
    b.append(SqlInfo::SqlMaxRowSizeIncludesBlobs, false);
    b.append(SqlInfo::SqlDefaultTransactionIsolation, 0i64);
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(SqlInfo::SqlSupportedTransactionsIsolationLevels, 0i32);
    b.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
    b.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, false);
    // Forward-only result sets, read-only concurrency.
    b.append(SqlInfo::SqlSupportedResultSetTypes, 0b10i32);
    b.append(
        SqlInfo::SqlSupportedConcurrenciesForResultSetUnspecified,
        0i32,
    );
    b.append(
        SqlInfo::SqlSupportedConcurrenciesForResultSetForwardOnly,
        0b10i32,
    );
    b.append(
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollSensitive,
        0i32,
    );
    b.append(
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollInsensitive,
        0i32,
    );
    b.append(SqlInfo::SqlBatchUpdatesSupported, false);
    b.append(SqlInfo::SqlSavepointsSupported, false);
    b.append(SqlInfo::SqlNamedParametersSupported, false);
    b.append(SqlInfo::SqlLocatorsUpdateCopy, false);
    b.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
    b.build().expect("static SQL info builds")
});

const KEYWORDS: &[&str] = &[
    "ANALYZE",
    "APPLY",
    "COPY",
    "DESCRIBE",
    "EXPLAIN",
    "FILE_FORMAT",
    "MERGE",
    "PARTITION",
    "QUALIFY",
    "RANGE",
    "REFRESH",
    "SHOW",
    "VACUUM",
];
const NUMERIC_FUNCTIONS: &[&str] = &[
    "abs", "acos", "asin", "atan", "atan2", "ceil", "cos", "degrees", "exp", "floor", "ln", "log",
    "log10", "mod", "pi", "power", "radians", "round", "sign", "sin", "sqrt", "tan", "trunc",
];
const STRING_FUNCTIONS: &[&str] = &[
    "ascii",
    "btrim",
    "char_length",
    "concat",
    "concat_ws",
    "initcap",
    "left",
    "length",
    "lower",
    "lpad",
    "ltrim",
    "regexp_replace",
    "repeat",
    "replace",
    "reverse",
    "right",
    "rpad",
    "rtrim",
    "split_part",
    "starts_with",
    "strpos",
    "substr",
    "substring",
    "translate",
    "trim",
    "upper",
];
const DATETIME_FUNCTIONS: &[&str] = &[
    "current_date",
    "current_time",
    "date_bin",
    "date_part",
    "date_trunc",
    "dateadd",
    "datediff",
    "extract",
    "from_unixtime",
    "now",
    "to_char",
    "to_date",
    "to_timestamp",
];

/// SQL types for `GetXdbcTypeInfo`.
pub(crate) static XDBC_TYPES: LazyLock<XdbcTypeInfoData> = LazyLock::new(|| {
    let mut b = XdbcTypeInfoDataBuilder::new();
    let types: &[(&str, XdbcDataType, Option<i32>, Option<&str>)] = &[
        ("BOOLEAN", XdbcDataType::XdbcBit, Some(1), None),
        ("TINYINT", XdbcDataType::XdbcTinyint, Some(3), None),
        ("SMALLINT", XdbcDataType::XdbcSmallint, Some(5), None),
        ("INTEGER", XdbcDataType::XdbcInteger, Some(10), None),
        ("BIGINT", XdbcDataType::XdbcBigint, Some(19), None),
        ("REAL", XdbcDataType::XdbcFloat, Some(24), None),
        ("DOUBLE", XdbcDataType::XdbcDouble, Some(53), None),
        (
            "DECIMAL",
            XdbcDataType::XdbcDecimal,
            Some(38),
            Some("precision,scale"),
        ),
        ("VARCHAR", XdbcDataType::XdbcVarchar, None, Some("length")),
        ("BYTEA", XdbcDataType::XdbcBinary, None, None),
        ("DATE", XdbcDataType::XdbcDate, Some(10), None),
        ("TIME", XdbcDataType::XdbcTime, Some(15), None),
        ("TIMESTAMP", XdbcDataType::XdbcTimestamp, Some(26), None),
    ];
    for (name, data_type, size, params) in types {
        let quoted = matches!(
            data_type,
            XdbcDataType::XdbcVarchar
                | XdbcDataType::XdbcDate
                | XdbcDataType::XdbcTime
                | XdbcDataType::XdbcTimestamp
        );
        let numeric = matches!(
            data_type,
            XdbcDataType::XdbcTinyint
                | XdbcDataType::XdbcSmallint
                | XdbcDataType::XdbcInteger
                | XdbcDataType::XdbcBigint
                | XdbcDataType::XdbcFloat
                | XdbcDataType::XdbcDouble
                | XdbcDataType::XdbcDecimal
        );
        b.append(XdbcTypeInfo {
            type_name: name.to_string(),
            data_type: *data_type,
            column_size: *size,
            literal_prefix: quoted.then(|| "'".to_string()),
            literal_suffix: quoted.then(|| "'".to_string()),
            create_params: params.map(|p| p.split(',').map(str::to_string).collect()),
            nullable: Nullable::NullabilityNullable,
            case_sensitive: *data_type == XdbcDataType::XdbcVarchar,
            searchable: Searchable::Full,
            unsigned_attribute: numeric.then_some(false),
            fixed_prec_scale: *data_type == XdbcDataType::XdbcDecimal,
            auto_increment: numeric.then_some(false),
            local_type_name: Some(name.to_string()),
            minimum_scale: (*data_type == XdbcDataType::XdbcDecimal).then_some(0),
            maximum_scale: (*data_type == XdbcDataType::XdbcDecimal).then_some(38),
            sql_data_type: *data_type,
            datetime_subcode: None,
            num_prec_radix: numeric.then_some(10),
            interval_precision: None,
        });
    }
    b.build().expect("static type info builds")
});

/// A table's name and its declared constraints.
pub(crate) type TableConstraints = ([String; 3], Vec<Constraint>);

/// Whether `name` ([database, schema, table]) matches optional catalog and schema filters and
/// a table name.
fn names(name: &[String; 3], catalog: Option<&str>, schema: Option<&str>, table: &str) -> bool {
    catalog.is_none_or(|c| c.is_empty() || c == name[0])
        && schema.is_none_or(|s| s.is_empty() || s == name[1])
        && name[2] == table
}

/// `GetPrimaryKeys` rows for `table`: one per column of its primary key.
pub(crate) fn primary_keys(
    tables: &[TableConstraints],
    catalog: Option<&str>,
    schema: Option<&str>,
    table: &str,
) -> Result<RecordBatch, ArrowError> {
    let mut text: Vec<StringBuilder> = (0..5).map(|_| StringBuilder::new()).collect();
    let mut sequence = Int32Builder::new();
    for (name, constraints) in tables
        .iter()
        .filter(|(n, _)| names(n, catalog, schema, table))
    {
        for c in constraints {
            let Constraint::PrimaryKey { name: key, columns } = c else {
                continue;
            };
            for (i, column) in columns.iter().enumerate() {
                for (b, v) in text
                    .iter_mut()
                    .zip([&name[0], &name[1], &name[2], column, key])
                {
                    b.append_value(v);
                }
                sequence.append_value(i as i32 + 1);
            }
        }
    }
    let mut columns: Vec<ArrayRef> = text
        .iter_mut()
        .map(|b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    columns.push(Arc::new(sequence.finish()));
    RecordBatch::try_new(primary_keys_schema(), columns)
}

/// Which foreign keys a request asks for.
#[derive(Debug)]
pub(crate) enum ForeignKeys<'a> {
    /// Those of one table (`GetImportedKeys`).
    Imported(&'a [String; 3]),
    /// Those referencing one table (`GetExportedKeys`).
    Exported(&'a [String; 3]),
    /// Those of the second table referencing the first (`GetCrossReference`).
    Between(&'a [String; 3], &'a [String; 3]),
}

/// The `update_rule`/`delete_rule` of a foreign key: Flight SQL's NO_ACTION.
const NO_ACTION: u8 = 3;

/// `GetImportedKeys`/`GetExportedKeys`/`GetCrossReference` rows: one per column of each
/// matching foreign key. Tables are given as [database, schema, table]; an empty database or
/// schema matches any.
pub(crate) fn foreign_keys(
    tables: &[TableConstraints],
    wanted: ForeignKeys<'_>,
) -> Result<RecordBatch, ArrowError> {
    let same = |a: &[String; 3], b: &[String; 3]| {
        (a[0].is_empty() || b[0].is_empty() || a[0] == b[0])
            && (a[1].is_empty() || b[1].is_empty() || a[1] == b[1])
            && a[2] == b[2]
    };
    let mut text: Vec<StringBuilder> = (0..8).map(|_| StringBuilder::new()).collect();
    let mut sequence = Int32Builder::new();
    let mut key_names: Vec<StringBuilder> = (0..2).map(|_| StringBuilder::new()).collect();
    let mut rules: Vec<UInt8Builder> = (0..2).map(|_| UInt8Builder::new()).collect();
    for (child, constraints) in tables {
        for c in constraints {
            let Constraint::ForeignKey {
                name,
                columns,
                references,
                referenced_columns,
            } = c
            else {
                continue;
            };
            let keep = match wanted {
                ForeignKeys::Imported(t) => same(t, child),
                ForeignKeys::Exported(t) => same(t, references),
                ForeignKeys::Between(pk, fk) => same(pk, references) && same(fk, child),
            };
            if !keep {
                continue;
            }
            // The name of the referenced key, from the parent's constraints.
            let parent_key = tables
                .iter()
                .filter(|(n, _)| n == references)
                .flat_map(|(_, cs)| cs)
                .find(|k| {
                    matches!(k, Constraint::PrimaryKey { .. } | Constraint::Unique { .. })
                        && k.columns() == referenced_columns.as_slice()
                })
                .map(|k| k.name().to_string());
            for (i, (fk_column, pk_column)) in columns.iter().zip(referenced_columns).enumerate() {
                let values = [
                    &references[0],
                    &references[1],
                    &references[2],
                    pk_column,
                    &child[0],
                    &child[1],
                    &child[2],
                    fk_column,
                ];
                for (b, v) in text.iter_mut().zip(values) {
                    b.append_value(v);
                }
                sequence.append_value(i as i32 + 1);
                key_names[0].append_value(name);
                key_names[1].append_option(parent_key.as_deref());
                rules[0].append_value(NO_ACTION);
                rules[1].append_value(NO_ACTION);
            }
        }
    }
    let mut columns: Vec<ArrayRef> = text
        .iter_mut()
        .map(|b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    columns.push(Arc::new(sequence.finish()));
    columns.extend(
        key_names
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef),
    );
    columns.extend(rules.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    RecordBatch::try_new(foreign_keys_schema(), columns)
}
