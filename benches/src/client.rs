//! Where benchmark queries run: an embedded session, or a `strata serve` server reached with
//! arrow-flight's Flight SQL client (the path BI tools take). Both return Arrow batches, so the
//! same answer checks apply.

use anyhow::Context;
use arrow::array::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use strata_query::{Session, Warehouse};
use tonic::transport::Channel;

/// A Flight SQL server and the credentials to use.
#[derive(Debug, Clone)]
pub struct FlightTarget {
    /// `grpc://host:port` or `http://host:port`.
    pub uri: String,
    pub user: String,
    pub password: String,
}

/// One query stream's connection.
#[derive(Debug)]
pub enum Client {
    Embedded(Box<Session>),
    Flight(Box<FlightSqlServiceClient<Channel>>),
}

impl Client {
    /// An embedded session on `warehouse`, or an authenticated Flight SQL connection.
    pub async fn connect(
        warehouse: &Warehouse,
        flight: Option<&FlightTarget>,
    ) -> anyhow::Result<Self> {
        let Some(target) = flight else {
            return Ok(Client::Embedded(Box::new(warehouse.session())));
        };
        let endpoint = target.uri.replacen("grpc://", "http://", 1);
        let channel = Channel::from_shared(endpoint.clone())?
            .connect()
            .await
            .with_context(|| format!("connecting to {}", target.uri))?;
        let mut client = FlightSqlServiceClient::new(channel);
        client
            .handshake(&target.user, &target.password)
            .await
            .with_context(|| format!("authenticating to {} as {}", target.uri, target.user))?;
        Ok(Client::Flight(Box::new(client)))
    }

    /// Runs one query and returns all its batches.
    pub async fn query(&mut self, sql: &str) -> anyhow::Result<Vec<RecordBatch>> {
        match self {
            Client::Embedded(session) => {
                let mut results = session.sql(sql).await?;
                Ok(results.pop().context("no statement to run")?.batches)
            }
            Client::Flight(client) => {
                let info = client.execute(sql.to_string(), None).await?;
                let mut batches = Vec::new();
                for endpoint in info.endpoint {
                    let ticket = endpoint.ticket.context("endpoint without a ticket")?;
                    let stream = client.do_get(ticket).await?;
                    batches.extend(stream.try_collect::<Vec<_>>().await?);
                }
                Ok(batches)
            }
        }
    }
}
