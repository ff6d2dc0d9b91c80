//! The Flight SQL server driven by arrow-flight's own client, RPC by RPC, over real TCP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, Float64Array, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys,
    CommandGetPrimaryKeys, CommandGetTables, CommandGetXdbcTypeInfo, CommandStatementIngest,
    SqlInfo, TableDefinitionOptions, TableExistsOption, TableNotExistOption,
};
use arrow_flight::{CancelFlightInfoRequest, CancelStatus, FlightInfo, IpcMessage};
use futures::TryStreamExt;
use strata_query::Warehouse;
use strata_server::{Authenticator, Limits, Role, ServeOptions, ServerConfig};
use tonic::transport::Channel;

const PASSWORD: &str = "correct horse";

/// A server on an ephemeral port over an in-memory warehouse, with users `strata` (admin) and
/// `analyst` (user).
async fn start(limits: Limits) -> SocketAddr {
    let warehouse = Warehouse::open("memory://").await.unwrap();
    let mut users = ServerConfig::load(None, Some(PASSWORD)).unwrap().users;
    users.add("analyst", "analyst-pw", Role::User).unwrap();
    let mut options = ServeOptions::new(Arc::new(Authenticator::new(
        users,
        Duration::from_secs(600),
    )));
    options.limits = limits;
    let listener = strata_server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(strata_server::serve(
        warehouse,
        listener,
        options,
        std::future::pending(),
    ));
    address
}

async fn connect(address: SocketAddr) -> FlightSqlServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    FlightSqlServiceClient::new(channel)
}

async fn login(address: SocketAddr, user: &str, password: &str) -> FlightSqlServiceClient<Channel> {
    let mut client = connect(address).await;
    client.handshake(user, password).await.unwrap();
    assert!(
        client.token().is_some(),
        "the handshake returns a bearer token"
    );
    client
}

async fn fetch(client: &mut FlightSqlServiceClient<Channel>, info: FlightInfo) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.expect("endpoint has a ticket");
        let batches: Vec<RecordBatch> = client
            .do_get(ticket)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        out.extend(batches);
    }
    out
}

async fn query(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> Vec<RecordBatch> {
    let info = client.execute(sql.to_string(), None).await.unwrap();
    fetch(client, info).await
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

fn text(batches: &[RecordBatch]) -> String {
    arrow::util::pretty::pretty_format_batches(batches)
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_is_required_and_checked() {
    let address = start(Limits::default()).await;
    let mut anonymous = connect(address).await;
    let e = anonymous
        .execute("SELECT 1".into(), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no credentials"), "{e}");

    let mut wrong = connect(address).await;
    let e = wrong.handshake("strata", "guess").await.unwrap_err();
    assert!(
        e.to_string().contains("invalid username or password"),
        "{e}"
    );

    let mut forged = connect(address).await;
    forged.set_token("not-a-token".into());
    let e = forged.execute("SELECT 1".into(), None).await.unwrap_err();
    assert!(e.to_string().contains("unknown token"), "{e}");

    let mut client = login(address, "strata", PASSWORD).await;
    assert_eq!(rows(&query(&mut client, "SELECT 1 AS one").await), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_updates_and_errors() {
    let address = start(Limits::default()).await;
    let mut client = login(address, "strata", PASSWORD).await;
    let created = client
        .execute_update(
            "CREATE TABLE sales (id BIGINT, region VARCHAR, amount DOUBLE)".into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(created, 0);
    let inserted = client
        .execute_update(
            "INSERT INTO sales VALUES (1, 'EU', 10.5), (2, 'US', 20), (3, 'EU', 1.5)".into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(inserted, 3);

    // DDL through CommandStatementQuery (as DB-API drivers send it) runs once.
    let batches = query(&mut client, "CREATE TABLE empty_one (a INT)").await;
    assert_eq!(rows(&batches), 1);

    let info = client
        .execute(
            "SELECT region, sum(amount) AS total FROM sales GROUP BY region ORDER BY region".into(),
            None,
        )
        .await
        .unwrap();
    let announced = info.clone().try_decode_schema().unwrap();
    assert_eq!(
        announced.field(0).data_type(),
        &DataType::Utf8,
        "no Utf8View on the wire"
    );
    let batches = fetch(&mut client, info).await;
    assert_eq!(batches[0].schema().as_ref(), &announced);
    assert_eq!(
        text(&batches),
        "+--------+-------+\n| region | total |\n+--------+-------+\n| EU     | 12.0  |\n| US     | 20.0  |\n+--------+-------+"
    );

    let e = client
        .execute("SELECT * FROM no_such_table".into(), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no_such_table"), "{e}");
    let e = client.execute("SELEC 1".into(), None).await.unwrap_err();
    assert!(
        e.to_string().contains("InvalidArgument") || e.to_string().contains("invalid"),
        "{e}"
    );

    // The server keeps serving after errors.
    assert_eq!(rows(&query(&mut client, "SELECT * FROM sales").await), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_bind_parameters() {
    let address = start(Limits::default()).await;
    let mut client = login(address, "strata", PASSWORD).await;
    client
        .execute_update("CREATE TABLE t (id BIGINT, name VARCHAR)".into(), None)
        .await
        .unwrap();

    // A prepared INSERT with `?` placeholders, executed for each bound row.
    let mut insert = client
        .prepare("INSERT INTO t VALUES (?, ?)".into(), None)
        .await
        .unwrap();
    assert_eq!(insert.parameter_schema().unwrap().fields().len(), 2);
    // `$n` is the n-th parameter even when a statement leaves some out: this one has two.
    let gap = client
        .prepare("SELECT id FROM t WHERE name = $2".into(), None)
        .await
        .unwrap();
    let gap_schema = gap.parameter_schema().unwrap();
    let names: Vec<&str> = gap_schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, ["$1", "$2"]);
    assert_eq!(gap_schema.field(1).data_type(), &DataType::Utf8);
    let params = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("1", DataType::Int64, true),
            Field::new("2", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
        ],
    )
    .unwrap();
    insert.set_parameters(params).unwrap();
    assert_eq!(insert.execute_update().await.unwrap(), 3);
    // A batch of rows is one statement: a row that cannot be written fails them all.
    let bad = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("1", DataType::Utf8, true),
            Field::new("2", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(StringArray::from(vec!["7", "seven"])),
            Arc::new(StringArray::from(vec!["g", "s"])),
        ],
    )
    .unwrap();
    insert.set_parameters(bad).unwrap();
    let e = insert.execute_update().await.unwrap_err();
    assert!(e.to_string().contains("seven"), "{e}");
    assert_eq!(rows(&query(&mut client, "SELECT * FROM t").await), 3);
    insert.close().await.unwrap();

    // A prepared query, executed repeatedly with new parameters.
    let mut select = client
        .prepare("SELECT name FROM t WHERE id = $1".into(), None)
        .await
        .unwrap();
    assert_eq!(select.dataset_schema().unwrap().field(0).name(), "name");
    for (id, expected) in [(2i64, "b"), (3, "c")] {
        let p = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, true)])),
            vec![Arc::new(Int64Array::from(vec![id]))],
        )
        .unwrap();
        select.set_parameters(p).unwrap();
        let info = select.execute().await.unwrap();
        let batches = fetch(&mut client, info).await;
        let names = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(names.value(0), expected);
    }
    select.close().await.unwrap();

    // Prepared DDL (JDBC prepares everything).
    let mut ddl = client
        .prepare("CREATE TABLE t2 (x INT)".into(), None)
        .await
        .unwrap();
    assert_eq!(ddl.execute_update().await.unwrap(), 0);
    assert_eq!(rows(&query(&mut client, "SELECT * FROM t2").await), 0);
}

fn ingest_command(
    table: &str,
    mode: (TableNotExistOption, TableExistsOption),
) -> CommandStatementIngest {
    CommandStatementIngest {
        table_definition_options: Some(TableDefinitionOptions {
            if_not_exist: mode.0 as i32,
            if_exists: mode.1 as i32,
        }),
        table: table.to_string(),
        schema: None,
        catalog: None,
        temporary: false,
        transaction_id: None,
        options: Default::default(),
    }
}

fn events(ids: std::ops::Range<i64>) -> RecordBatch {
    let n = ids.end - ids.start;
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("score", DataType::Float64, true),
        ])),
        vec![
            Arc::new(Int64Array::from_iter_values(ids)),
            Arc::new(Float64Array::from_iter_values((0..n).map(|i| i as f64))),
        ],
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_ingest_creates_appends_and_replaces() {
    let address = start(Limits::default()).await;
    let mut client = login(address, "strata", PASSWORD).await;
    let create = (TableNotExistOption::Create, TableExistsOption::Fail);
    let append = (TableNotExistOption::Fail, TableExistsOption::Append);
    let replace = (TableNotExistOption::Create, TableExistsOption::Replace);

    let batches = vec![Ok(events(0..1000)), Ok(events(1000..2500))];
    let n = client
        .execute_ingest(
            ingest_command("events", create),
            futures::stream::iter(batches),
        )
        .await
        .unwrap();
    assert_eq!(n, 2500);
    let again = client
        .execute_ingest(
            ingest_command("events", create),
            futures::stream::iter(vec![Ok(events(0..10))]),
        )
        .await
        .unwrap_err();
    assert!(again.to_string().contains("already exists"), "{again}");

    let n = client
        .execute_ingest(
            ingest_command("events", append),
            futures::stream::iter(vec![Ok(events(2500..2600))]),
        )
        .await
        .unwrap();
    assert_eq!(n, 100);
    let count = query(
        &mut client,
        "SELECT count(*) AS n, max(id) AS top FROM events",
    )
    .await;
    assert_eq!(
        text(&count),
        "+------+------+\n| n    | top  |\n+------+------+\n| 2600 | 2599 |\n+------+------+"
    );

    // A batch whose column does not fit the table changes nothing.
    let bad = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)])),
        vec![Arc::new(StringArray::from(vec!["7", "seven"]))],
    )
    .unwrap();
    let e = client
        .execute_ingest(
            ingest_command("events", append),
            futures::stream::iter(vec![Ok(bad)]),
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("score") || e.to_string().contains("seven"),
        "{e}"
    );
    assert_eq!(
        rows(&query(&mut client, "SELECT * FROM events").await),
        2600
    );

    // Into another schema, named by the command.
    client
        .execute_update("CREATE SCHEMA staging".into(), None)
        .await
        .unwrap();
    let mut into_staging = ingest_command("raw_events", create);
    into_staging.schema = Some("staging".into());
    let n = client
        .execute_ingest(into_staging, futures::stream::iter(vec![Ok(events(0..7))]))
        .await
        .unwrap();
    assert_eq!(n, 7);
    assert_eq!(
        rows(&query(&mut client, "SELECT * FROM main.staging.raw_events").await),
        7
    );

    // Replacing a table that must exist fails when it does not.
    let replace_existing = (TableNotExistOption::Fail, TableExistsOption::Replace);
    let e = client
        .execute_ingest(
            ingest_command("no_such_events", replace_existing),
            futures::stream::iter(vec![Ok(events(0..5))]),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");

    let n = client
        .execute_ingest(
            ingest_command("events", replace),
            futures::stream::iter(vec![Ok(events(0..5))]),
        )
        .await
        .unwrap();
    assert_eq!(n, 5);
    assert_eq!(rows(&query(&mut client, "SELECT * FROM events").await), 5);
}

/// `GetTables` of the `dim%` tables of `main.public`, with their schemas.
async fn dim_tables(client: &mut FlightSqlServiceClient<Channel>) -> Vec<RecordBatch> {
    let info = client
        .get_tables(CommandGetTables {
            catalog: Some("main".into()),
            db_schema_filter_pattern: Some("public".into()),
            table_name_filter_pattern: Some("dim%".into()),
            table_types: vec!["TABLE".into()],
            include_schema: true,
        })
        .await
        .unwrap();
    fetch(client, info).await
}

/// The Arrow schema in the first row of a `GetTables` answer.
fn first_table_schema(tables: &[RecordBatch]) -> Schema {
    let schema_column = tables[0]
        .column_by_name("table_schema")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::BinaryArray>()
        .unwrap();
    Schema::try_from(IpcMessage(schema_column.value(0).to_vec().into())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_for_object_browsers() {
    let address = start(Limits::default()).await;
    let mut client = login(address, "strata", PASSWORD).await;
    client
        .execute_update(
            "CREATE TABLE dim_city (city_id INT PRIMARY KEY, name VARCHAR);
             CREATE TABLE fact_visit (visit_id INT, city INT REFERENCES dim_city, n INT)"
                .into(),
            None,
        )
        .await
        .unwrap();

    let info = client.get_catalogs().await.unwrap();
    let catalogs = fetch(&mut client, info).await;
    assert!(text(&catalogs).contains("main"), "{}", text(&catalogs));

    let info = client
        .get_db_schemas(CommandGetDbSchemas {
            catalog: Some("main".into()),
            db_schema_filter_pattern: Some("pub%".into()),
        })
        .await
        .unwrap();
    let schemas = fetch(&mut client, info).await;
    assert_eq!(rows(&schemas), 1);
    assert!(text(&schemas).contains("public"));

    let tables = dim_tables(&mut client).await;
    assert_eq!(rows(&tables), 1);
    let table_schema = first_table_schema(&tables);
    assert_eq!(table_schema.field(1).name(), "name");
    assert_eq!(table_schema.field(1).data_type(), &DataType::Utf8);

    // A schema change shows at once.
    client
        .execute_update(
            "ALTER TABLE dim_city RENAME COLUMN name TO city_name; \
             ALTER TABLE dim_city ADD COLUMN population BIGINT"
                .into(),
            None,
        )
        .await
        .unwrap();
    let tables = dim_tables(&mut client).await;
    let table_schema = first_table_schema(&tables);
    let names: Vec<&str> = table_schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, ["city_id", "city_name", "population"]);
    assert!(table_schema.metadata().is_empty());

    // Comments travel as REMARKS, which the JDBC driver shows in getColumns.
    client
        .execute_update(
            "COMMENT ON TABLE dim_city IS 'Cities we sell in'; \
             COMMENT ON COLUMN dim_city.population IS 'Residents, last census'"
                .into(),
            None,
        )
        .await
        .unwrap();
    let tables = dim_tables(&mut client).await;
    let table_schema = first_table_schema(&tables);
    let remarks = "ARROW:FLIGHT:SQL:REMARKS";
    assert_eq!(
        table_schema.metadata().get(remarks).map(String::as_str),
        Some("Cities we sell in")
    );
    assert_eq!(
        table_schema
            .field(2)
            .metadata()
            .get(remarks)
            .map(String::as_str),
        Some("Residents, last census")
    );
    assert!(table_schema.field(0).metadata().get(remarks).is_none());

    let info = client.get_table_types().await.unwrap();
    assert!(text(&fetch(&mut client, info).await).contains("TABLE"));

    let info = client
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::FlightSqlServerReadOnly,
        ])
        .await
        .unwrap();
    let sql_info = fetch(&mut client, info).await;
    assert_eq!(rows(&sql_info), 2);
    assert!(text(&sql_info).contains("Strata"));

    let info = client
        .get_xdbc_type_info(CommandGetXdbcTypeInfo { data_type: None })
        .await
        .unwrap();
    assert!(rows(&fetch(&mut client, info).await) >= 10);

    let info = client
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: None,
            db_schema: None,
            table: "dim_city".into(),
        })
        .await
        .unwrap();
    let keys = fetch(&mut client, info).await;
    assert_eq!(
        text(&keys),
        "+--------------+----------------+------------+-------------+---------------+--------------+\n\
         | catalog_name | db_schema_name | table_name | column_name | key_name      | key_sequence |\n\
         +--------------+----------------+------------+-------------+---------------+--------------+\n\
         | main         | public         | dim_city   | city_id     | dim_city_pkey | 1            |\n\
         +--------------+----------------+------------+-------------+---------------+--------------+"
    );

    // The star schema's relationship, from both ends and between the two tables.
    let expected = "main.public.dim_city.city_id <- main.public.fact_visit.city \
                    (fact_visit_city_fkey -> dim_city_pkey)";
    let relationship = |batches: &[RecordBatch]| -> Vec<String> {
        let column = |b: &RecordBatch, name: &str| {
            let c = b.column_by_name(name).unwrap();
            c.as_any().downcast_ref::<StringArray>().unwrap().clone()
        };
        let mut out = Vec::new();
        for b in batches {
            let names = [
                "pk_catalog_name",
                "pk_db_schema_name",
                "pk_table_name",
                "pk_column_name",
                "fk_catalog_name",
                "fk_db_schema_name",
                "fk_table_name",
                "fk_column_name",
                "fk_key_name",
                "pk_key_name",
            ]
            .map(|n| column(b, n));
            for i in 0..b.num_rows() {
                let v: Vec<&str> = names.iter().map(|c| c.value(i)).collect();
                out.push(format!(
                    "{}.{}.{}.{} <- {}.{}.{}.{} ({} -> {})",
                    v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]
                ));
            }
        }
        out
    };
    let info = client
        .get_imported_keys(CommandGetImportedKeys {
            catalog: None,
            db_schema: None,
            table: "fact_visit".into(),
        })
        .await
        .unwrap();
    assert_eq!(relationship(&fetch(&mut client, info).await), [expected]);
    let info = client
        .get_exported_keys(CommandGetExportedKeys {
            catalog: Some("main".into()),
            db_schema: Some("public".into()),
            table: "dim_city".into(),
        })
        .await
        .unwrap();
    assert_eq!(relationship(&fetch(&mut client, info).await), [expected]);
    let info = client
        .get_cross_reference(CommandGetCrossReference {
            pk_catalog: None,
            pk_db_schema: None,
            pk_table: "dim_city".into(),
            fk_catalog: None,
            fk_db_schema: None,
            fk_table: "fact_visit".into(),
        })
        .await
        .unwrap();
    assert_eq!(relationship(&fetch(&mut client, info).await), [expected]);
    let info = client
        .get_imported_keys(CommandGetImportedKeys {
            catalog: None,
            db_schema: None,
            table: "dim_city".into(),
        })
        .await
        .unwrap();
    assert_eq!(rows(&fetch(&mut client, info).await), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_cannot_reach_server_files() {
    let address = start(Limits::default()).await;
    let mut analyst = login(address, "analyst", "analyst-pw").await;
    analyst
        .execute_update("CREATE TABLE mine (a INT)".into(), None)
        .await
        .unwrap();
    let e = analyst
        .execute_update("COPY INTO mine FROM '/etc/hostname'".into(), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("admin role"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_timeout_stop_running_queries() {
    let address = start(Limits {
        max_concurrent_queries: 4,
        query_timeout: Some(Duration::from_secs(2)),
    })
    .await;
    let mut client = login(address, "strata", PASSWORD).await;
    let endless = "SELECT value FROM generate_series(1, 9000000000000) ORDER BY value % 7";

    // Cancel: the query stops with Cancelled.
    let info = client
        .execute(
            "SELECT value FROM generate_series(1, 9000000000000)".into(),
            None,
        )
        .await
        .unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut stream = client.do_get(ticket).await.unwrap();
    let first = stream.try_next().await.unwrap().unwrap();
    assert!(first.num_rows() > 0);
    let request = CancelFlightInfoRequest::new(info);
    let mut replies = client
        .do_action(arrow_flight::Action::new(
            "CancelFlightInfo",
            prost::Message::encode_to_vec(&request),
        ))
        .await
        .unwrap();
    let reply = replies.message().await.unwrap().unwrap();
    let decoded: arrow_flight::CancelFlightInfoResult = prost::Message::decode(reply.body).unwrap();
    assert_eq!(decoded.status, CancelStatus::Cancelled as i32);
    let mut ended = None;
    while let Some(next) = stream.try_next().await.transpose() {
        if let Err(e) = next {
            ended = Some(e.to_string());
            break;
        }
    }
    let ended = ended.expect("a cancelled query ends with an error");
    assert!(ended.contains("cancelled"), "{ended}");

    // Timeout: a query past the limit fails with DeadlineExceeded.
    let info = client.execute(endless.into(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let result: Result<Vec<RecordBatch>, _> =
        client.do_get(ticket).await.unwrap().try_collect().await;
    let e = result.unwrap_err().to_string();
    assert!(e.contains("timeout"), "{e}");

    // A statement that is not a streamed query (here CREATE TABLE AS) is held to the timeout
    // too, and commits nothing.
    let e = client
        .execute_update(format!("CREATE TABLE slow AS {endless}"), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("timeout"), "{e}");
    let e = client
        .execute("SELECT * FROM slow".into(), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("slow"), "{e}");

    // The server still answers.
    assert_eq!(rows(&query(&mut client, "SELECT 1").await), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_types_only_for_clients_that_ask() {
    let address = start(Limits::default()).await;
    let mut client = login(address, "strata", PASSWORD).await;
    client
        .execute_update(
            "CREATE TABLE names AS SELECT 'n' || value AS name FROM generate_series(1, 3)".into(),
            None,
        )
        .await
        .unwrap();
    // Strings computed as views (as DataFusion does for many string functions and Parquet
    // reads) go out as views only to a client that asks.
    let sql = "SELECT arrow_cast(name, 'Utf8View') AS name FROM names ORDER BY name";
    let classic = query(&mut client, sql).await;
    assert_eq!(classic[0].schema().field(0).data_type(), &DataType::Utf8);

    client.set_header("x-strata-arrow-views", "true");
    let info = client.execute(sql.into(), None).await.unwrap();
    let announced = Schema::try_from(info.clone()).unwrap();
    assert_eq!(announced.field(0).data_type(), &DataType::Utf8View);
    let views = fetch(&mut client, info).await;
    assert_eq!(views[0].schema().field(0).data_type(), &DataType::Utf8View);
    assert_eq!(text(&views), text(&classic));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_while_another_client_ingests() {
    let address = start(Limits::default()).await;
    let mut writer = login(address, "strata", PASSWORD).await;
    writer
        .execute_update("CREATE TABLE facts (id BIGINT, score DOUBLE)".into(), None)
        .await
        .unwrap();
    writer
        .execute_update(
            "INSERT INTO facts SELECT value, 1.0 FROM generate_series(1, 1000)".into(),
            None,
        )
        .await
        .unwrap();

    let readers: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(async move {
                let mut client = login(address, "strata", PASSWORD).await;
                let mut seen = Vec::new();
                for _ in 0..10 {
                    let b = query(&mut client, "SELECT count(*) AS n FROM facts").await;
                    let n = b[0]
                        .column(0)
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .map(|a| a.value(0) as u64)
                        .or_else(|| {
                            b[0].column(0)
                                .as_any()
                                .downcast_ref::<UInt64Array>()
                                .map(|a| a.value(0))
                        })
                        .unwrap();
                    seen.push(n);
                }
                seen
            })
        })
        .collect();
    let append = (TableNotExistOption::Fail, TableExistsOption::Append);
    for i in 0..5 {
        let batch = events(10_000 + i * 100..10_000 + (i + 1) * 100);
        let n = writer
            .execute_ingest(
                ingest_command("facts", append),
                futures::stream::iter(vec![Ok(batch)]),
            )
            .await
            .unwrap();
        assert_eq!(n, 100);
    }
    for r in readers {
        let seen = r.await.unwrap();
        // Every reader sees a committed state: 1000 plus whole ingests, never a partial one,
        // and never going back in time.
        assert!(
            seen.iter().all(|n| (n - 1000) % 100 == 0 && *n <= 1500),
            "{seen:?}"
        );
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    }
    let total = query(&mut writer, "SELECT count(*) FROM facts").await;
    assert!(text(&total).contains("1500"));
}

/// What the Flight SQL JDBC driver does when DBeaver connects and browses: HTTP Basic on the
/// first call (padded base64, no handshake), every SQL info id, catalogs, schemas, tables with
/// their schemas, primary keys, then a prepared query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_driver_connect_and_browse_sequence() {
    use base64::Engine;
    let address = start(Limits::default()).await;
    let mut setup = login(address, "strata", PASSWORD).await;
    setup
        .execute_update(
            "CREATE TABLE dim_customer (c_id INT PRIMARY KEY, c_name VARCHAR)".into(),
            None,
        )
        .await
        .unwrap();

    let mut jdbc = connect(address).await;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("strata:{PASSWORD}"));
    jdbc.set_header("authorization", format!("Basic {basic}"));

    // GetSqlInfo with no ids: everything. The driver reads these as typed values and fails on
    // a missing one.
    let info = jdbc.get_sql_info(vec![]).await.unwrap();
    let all = fetch(&mut jdbc, info).await;
    let ids: Vec<u32> = all[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::UInt32Array>()
        .unwrap()
        .values()
        .to_vec();
    for required in [
        0u32, 1, 2, 3, 4, 8, 9, 500, 501, 502, 503, 504, 507, 508, 513, 563, 572, 573,
    ] {
        assert!(ids.contains(&required), "SqlInfo {required} missing");
    }

    let info = jdbc.get_catalogs().await.unwrap();
    assert!(text(&fetch(&mut jdbc, info).await).contains("main"));
    let info = jdbc
        .get_db_schemas(CommandGetDbSchemas {
            catalog: Some("main".into()),
            db_schema_filter_pattern: None,
        })
        .await
        .unwrap();
    let schemas = text(&fetch(&mut jdbc, info).await);
    assert!(
        schemas.contains("public") && schemas.contains("system"),
        "{schemas}"
    );
    let info = jdbc
        .get_tables(CommandGetTables {
            catalog: Some("main".into()),
            db_schema_filter_pattern: Some("%".into()),
            table_name_filter_pattern: Some("%".into()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let tables = fetch(&mut jdbc, info).await;
    let listed = text(&tables);
    assert!(
        listed.contains("dim_customer") && listed.contains("query_log"),
        "{listed}"
    );
    let info = jdbc
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: Some("main".into()),
            db_schema: Some("public".into()),
            table: "dim_customer".into(),
        })
        .await
        .unwrap();
    assert_eq!(rows(&fetch(&mut jdbc, info).await), 1);

    let mut prepared = jdbc
        .prepare(
            "SELECT c_id, c_name FROM main.public.dim_customer".into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(prepared.dataset_schema().unwrap().fields().len(), 2);
    let info = prepared.execute().await.unwrap();
    assert_eq!(rows(&fetch(&mut jdbc, info).await), 0);
    prepared.close().await.unwrap();
}

/// A client that goes away mid-stream stops its query: the query log records it as
/// cancelled, and the server keeps serving others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_disconnecting_mid_stream_stops_its_query() {
    let address = start(Limits::default()).await;
    {
        let mut client = login(address, "strata", PASSWORD).await;
        let info = client
            .execute(
                "SELECT value FROM generate_series(1, 9000000000000)".into(),
                None,
            )
            .await
            .unwrap();
        let ticket = info.endpoint[0].ticket.clone().unwrap();
        let mut stream = client.do_get(ticket).await.unwrap();
        assert!(stream.try_next().await.unwrap().is_some());
        // Client, stream and channel dropped here.
    }
    let mut observer = login(address, "strata", PASSWORD).await;
    let mut statuses = String::new();
    for _ in 0..50 {
        let log = query(
            &mut observer,
            "SELECT status FROM system.query_log WHERE query_text LIKE '%generate_series(1, 9000000000000)%'",
        )
        .await;
        statuses = text(&log);
        if statuses.contains("CANCELLED") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(statuses.contains("CANCELLED"), "{statuses}");
}

/// With a certificate and key the server speaks TLS only: a TLS client that trusts the
/// certificate works, a plaintext client does not get through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_certificate_and_key() {
    use tonic::transport::{Certificate, ClientTlsConfig};
    let dir = tempfile::tempdir().unwrap();
    let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = issued.cert.pem();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, issued.signing_key.serialize_pem()).unwrap();

    let warehouse = Warehouse::open("memory://").await.unwrap();
    let users = ServerConfig::load(None, Some(PASSWORD)).unwrap().users;
    let mut options = ServeOptions::new(Arc::new(Authenticator::new(
        users,
        Duration::from_secs(600),
    )));
    options.tls = Some((cert, key));
    let listener = strata_server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(strata_server::serve(
        warehouse,
        listener,
        options,
        std::future::pending(),
    ));

    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(cert_pem))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = FlightSqlServiceClient::new(channel);
    client.handshake("strata", PASSWORD).await.unwrap();
    assert_eq!(rows(&query(&mut client, "SELECT 1").await), 1);

    let plain = Channel::from_shared(format!("http://localhost:{port}"))
        .unwrap()
        .connect()
        .await;
    if let Ok(plain) = plain {
        let mut client = FlightSqlServiceClient::new(plain);
        assert!(client.handshake("strata", PASSWORD).await.is_err());
    }
}

/// The message of a failed call's gRPC status.
fn message(e: &arrow_flight::error::FlightError) -> &str {
    match e {
        arrow_flight::error::FlightError::Tonic(status) => status.message(),
        other => panic!("not a gRPC status: {other}"),
    }
}

/// The gRPC code of a failed call.
fn code(e: &arrow_flight::error::FlightError) -> tonic::Code {
    match e {
        arrow_flight::error::FlightError::Tonic(status) => status.code(),
        other => panic!("not a gRPC status: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_reach_clients_with_their_grpc_code() {
    let address = start(Limits::default()).await;
    let mut client = login(address, "strata", PASSWORD).await;
    client
        .execute_update(
            "CREATE TABLE sales (id BIGINT PRIMARY KEY, amount DOUBLE CHECK (amount >= 0))".into(),
            None,
        )
        .await
        .unwrap();
    client
        .execute_update("INSERT INTO sales VALUES (1, 10)".into(), None)
        .await
        .unwrap();

    let e = client
        .execute("SELECT * FROM sale".into(), None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), tonic::Code::NotFound, "{e}");
    assert_eq!(
        message(&e),
        "table 'main.public.sale' not found; did you mean 'sales'?"
    );

    let e = client.execute("SELEC 1".into(), None).await.unwrap_err();
    assert_eq!(code(&e), tonic::Code::InvalidArgument, "{e}");

    let e = client
        .execute_update("INSERT INTO sales VALUES (1, 20)".into(), None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), tonic::Code::FailedPrecondition, "{e}");
    assert!(e.to_string().contains("PRIMARY KEY constraint '"), "{e}");
    let e = client
        .execute_update("INSERT INTO sales VALUES (2, -1)".into(), None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), tonic::Code::FailedPrecondition, "{e}");
    assert!(e.to_string().contains("CHECK constraint '"), "{e}");

    let e = client
        .execute_update("CREATE TABLE sales (x INT)".into(), None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), tonic::Code::AlreadyExists, "{e}");

    let mut analyst = login(address, "analyst", "analyst-pw").await;
    let e = analyst
        .execute_update("COPY INTO sales FROM '/etc/hostname'".into(), None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), tonic::Code::PermissionDenied, "{e}");
}

/// Clients updating one row at once, with automatic retries off: each update either commits
/// or loses the race and comes back `Aborted` saying it can be retried; no update is lost or
/// applied twice. (With retries on, the default, every update commits: see the query crate's
/// conflict tests.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_commit_race_is_aborted_and_no_update_is_lost() {
    const CLIENTS: usize = 4;
    const UPDATES: usize = 5;
    let address = start(Limits::default()).await;
    let mut setup = login(address, "strata", PASSWORD).await;
    for sql in [
        "CREATE TABLE counter (id BIGINT, n BIGINT)",
        "INSERT INTO counter VALUES (1, 0)",
    ] {
        setup.execute_update(sql.into(), None).await.unwrap();
    }
    let (mut committed, mut aborted) = (0_i64, 0_usize);
    for _round in 0..20 {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                tokio::spawn(async move {
                    let mut client = login(address, "strata", PASSWORD).await;
                    client
                        .execute_update("SET strata.max_statement_retries = 0".into(), None)
                        .await
                        .unwrap();
                    let mut outcomes = Vec::new();
                    for _ in 0..UPDATES {
                        let sql = "UPDATE counter SET n = n + 1 WHERE id = 1";
                        let outcome = client.execute_update(sql.into(), None).await;
                        outcomes.push(outcome.map(|_| ()).map_err(|e| (code(&e), e.to_string())));
                    }
                    outcomes
                })
            })
            .collect();
        for client in clients {
            for outcome in client.await.unwrap() {
                match outcome {
                    Ok(()) => committed += 1,
                    Err((tonic::Code::Aborted, message)) => {
                        assert!(message.contains("can be retried"), "{message}");
                        aborted += 1;
                    }
                    Err(other) => panic!("an update failed otherwise: {other:?}"),
                }
            }
        }
        if aborted > 0 {
            break;
        }
    }
    assert!(aborted > 0, "no update lost a commit race in 20 rounds");
    let n = query(&mut setup, "SELECT n FROM counter").await;
    let n = n[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    assert_eq!(n.value(0), committed, "{aborted} aborted");
}

/// `system.query_log` records who ran each statement; a user sees only their own, an admin
/// everyone's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_log_shows_users_their_own_statements_and_admins_all() {
    let address = start(Limits::default()).await;
    let mut admin = login(address, "strata", PASSWORD).await;
    let mut analyst = login(address, "analyst", "analyst-pw").await;
    query(&mut admin, "SELECT 'admin was here'").await;
    query(&mut analyst, "SELECT 'analyst was here'").await;
    let sql = "SELECT DISTINCT user_name FROM system.query_log ORDER BY user_name";
    let seen_by_analyst = text(&query(&mut analyst, sql).await);
    assert!(seen_by_analyst.contains("analyst"), "{seen_by_analyst}");
    assert!(!seen_by_analyst.contains("strata"), "{seen_by_analyst}");
    let seen_by_admin = text(&query(&mut admin, sql).await);
    assert!(
        seen_by_admin.contains("analyst") && seen_by_admin.contains("strata"),
        "{seen_by_admin}"
    );
}

/// A script answers with its last statement's result: statements before it run first (an
/// earlier query's rows are streamed away, not held), and a last query streams like a single
/// one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_streams_its_last_query_after_running_the_rest() {
    let address = start(Limits::default()).await;
    let mut client = login(address, "strata", PASSWORD).await;
    let script = "CREATE TABLE steps (n BIGINT); \
                  SELECT * FROM generate_series(1, 2000000); \
                  INSERT INTO steps SELECT value FROM generate_series(1, 5); \
                  SELECT sum(n) AS total FROM steps";
    let result = text(&query(&mut client, script).await);
    assert!(result.contains("| 15    |"), "{result}");
    let again = text(&query(&mut client, "SELECT count(*) AS n FROM steps").await);
    assert!(again.contains("| 5 |"), "{again}");
}

/// Results travel in messages of about a megabyte, whatever size of batch the query produced:
/// a client pays per message (ADBC's Go driver spent two cores on 12,000 small ones).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_results_travel_in_few_messages_in_order() {
    let address = start(Limits::default()).await;
    let mut client = login(address, "strata", PASSWORD).await;
    // 1M rows of two 8-byte columns: DataFusion makes 123 batches of 8,192 rows (128 KB).
    let batches = query(
        &mut client,
        "SELECT value, value * 2 AS twice FROM generate_series(1, 1000000) ORDER BY value",
    )
    .await;
    assert_eq!(rows(&batches), 1_000_000);
    assert!(
        (8..=20).contains(&batches.len()),
        "16 MB should arrive in about 16 messages, not {}",
        batches.len()
    );
    let mut expected = 1i64;
    for batch in &batches {
        let values = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        for v in values.values() {
            assert_eq!(*v, expected);
            expected += 1;
        }
    }
}
