//! Signing a PostgreSQL client in, and the connection it gets.
//!
//! Every sign-in is SCRAM-SHA-256 (see [`crate::auth::scram`]), for known and unknown users
//! alike, and counts toward the same lockouts as Flight's Basic credentials. After sign-in the
//! connection gets its own Strata session, in the database the client named when that
//! database exists, with `pg_catalog` and PostgreSQL's functions set up on it.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{
    ClientInfo, METADATA_DATABASE, METADATA_USER, PgWireConnectionState, PidSecretKeyGenerator,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::sync::Mutex as AsyncMutex;

use super::compat::{self, Settings};
use super::connection::Connection;
use super::error::{auth_error, fatal};
use super::server::PgServer;
use crate::auth::scram::{MECHANISM, ScramExchange, ScramVerifier};
use crate::auth::{Identity, Role};

/// Where a connection's sign-in stands.
enum State {
    Initial,
    /// SCRAM was offered; the client's first message is awaited.
    ScramOffered {
        user: String,
        verifier: ScramVerifier,
    },
    /// The server's first message went out; the client's proof is awaited.
    Scram {
        user: String,
        exchange: ScramExchange,
    },
}

/// The startup handler of one connection.
pub(crate) struct Startup {
    server: Arc<PgServer>,
    state: Mutex<State>,
}

impl Startup {
    pub(crate) fn new(server: Arc<PgServer>) -> Self {
        Self {
            server,
            state: Mutex::new(State::Initial),
        }
    }

    fn take_state(&self) -> State {
        std::mem::replace(
            &mut *self.state.lock().unwrap_or_else(|e| e.into_inner()),
            State::Initial,
        )
    }

    fn set_state(&self, state: State) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    /// Starts the connection's session and tells the client it is in.
    async fn finish<C>(&self, client: &mut C, identity: Identity) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (pid, secret) = self.server.pids.generate(client);
        client.set_pid_and_secret_key(pid, secret.clone());
        let (cancels, registration) = self
            .server
            .cancels
            .register((pid, secret.to_bytes().to_vec()));

        let mut session = self.server.shared.warehouse.session();
        session.set_user(&identity.user, identity.role == Role::Admin);
        session.set_protocol("postgres");
        let database = client.metadata().get(METADATA_DATABASE).cloned();
        compat::prepare_session(&mut session, database.as_deref())
            .await
            .map_err(|e| fatal("XX000", format!("starting the session: {e}")))?;
        let settings = Settings::new(&session);
        let parameters = settings.server_parameters(&session);
        client.session_extensions().insert(Connection {
            session: AsyncMutex::new(session),
            identity,
            settings: Mutex::new(settings),
            copy: Mutex::new(None),
            cursors: AsyncMutex::new(Default::default()),
            cancels,
            _registration: registration,
        });
        finish_authentication(client, &parameters).await
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let from = Some(client.socket_addr().ip());
        let auth = &self.server.shared.auth;
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                let user = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .ok_or_else(|| fatal("28000", "no user name given".to_string()))?;
                if !auth.enabled() {
                    let identity = auth.scram_outcome(&user, from, true).map_err(auth_error)?;
                    return self.finish(client, identity).await;
                }
                let verifier = auth.scram_verifier(&user, from).map_err(auth_error)?;
                client
                    .send(PgWireBackendMessage::Authentication(Authentication::SASL(
                        vec![MECHANISM.to_string()],
                    )))
                    .await?;
                self.set_state(State::ScramOffered { user, verifier });
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => match self.take_state() {
                State::ScramOffered { user, verifier } => {
                    well_formed_sasl_initial_response(&message)?;
                    let initial = message.into_sasl_initial_response()?;
                    if initial.auth_method != MECHANISM {
                        return Err(fatal(
                            "28000",
                            format!("SASL mechanism {} is not offered", initial.auth_method),
                        ));
                    }
                    let data = initial.data.unwrap_or_default();
                    let (exchange, server_first) = ScramExchange::start(verifier, &data)
                        .map_err(|e| fatal("08P01", e.to_string()))?;
                    client
                        .send(PgWireBackendMessage::Authentication(
                            Authentication::SASLContinue(server_first.into_bytes().into()),
                        ))
                        .await?;
                    self.set_state(State::Scram { user, exchange });
                }
                State::Scram { user, exchange } => {
                    let response = message.into_sasl_response()?;
                    let proved = exchange.finish(&response.data);
                    let identity =
                        auth.scram_outcome(&user, from, proved.is_ok())
                            .map_err(|refused| match refused.code() {
                                // Lockouts say so; anything else in PostgreSQL's words.
                                _ if refused.message().starts_with("too many") => {
                                    auth_error(refused)
                                }
                                _ => fatal(
                                    "28P01",
                                    format!("password authentication failed for user \"{user}\""),
                                ),
                            })?;
                    let server_final = proved.map_err(|e| fatal("28P01", e.to_string()))?;
                    client
                        .send(PgWireBackendMessage::Authentication(
                            Authentication::SASLFinal(server_final.into_bytes().into()),
                        ))
                        .await?;
                    self.finish(client, identity).await?;
                }
                State::Initial => {
                    return Err(fatal("08P01", "unexpected password message".to_string()));
                }
            },
            _ => {}
        }
        Ok(())
    }
}

/// Refuses a malformed SASLInitialResponse before pgwire decodes it (its decoder trusts the
/// lengths it reads): a mechanism name ending in NUL, then a 4-byte length that is -1 or fits
/// what follows.
fn well_formed_sasl_initial_response(
    message: &pgwire::messages::startup::PasswordMessageFamily,
) -> PgWireResult<()> {
    use pgwire::messages::startup::PasswordMessageFamily;
    let PasswordMessageFamily::Raw(bytes) = message else {
        return Ok(());
    };
    let malformed = || fatal("08P01", "malformed SASLInitialResponse".to_string());
    let name_end = bytes.iter().position(|b| *b == 0).ok_or_else(malformed)?;
    let rest = bytes.get(name_end + 1..).ok_or_else(malformed)?;
    let length: [u8; 4] = rest
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(malformed)?;
    let length = i32::from_be_bytes(length);
    let data = rest.len() - 4;
    if length == -1 || usize::try_from(length).is_ok_and(|l| l <= data) {
        Ok(())
    } else {
        Err(malformed())
    }
}
