//! Who may connect, and what they may do.
//!
//! Users come from a `strata.toml` file (argon2 password hashes, never plain passwords) and
//! from the environment: `STRATA_PASSWORD` sets the password of user `strata`. A client
//! proves who it is with HTTP Basic credentials (on the Flight handshake, or on any call, as
//! ADBC and the JDBC driver send them) and receives a bearer token that expires; every call
//! carries either. Tokens are random (244 bits), kept in memory, and die with the server.
//!
//! ```toml
//! # Where users without the admin role may COPY INTO from (URL prefixes).
//! load_locations = ["s3://landing-bucket/incoming/"]
//! # S3 endpoints they may name in COPY INTO ... ENDPOINT (admins may name any).
//! load_endpoints = ["http://minio.internal:9000"]
//!
//! [[users]]
//! name = "alice"
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$..."   # `strata hash-password`
//! scram_sha_256 = "SCRAM-SHA-256$4096:...$...:..."       # the same password, for PostgreSQL
//! role = "admin"                                         # or "user" (the default)
//! ```
//!
//! PostgreSQL clients sign in with SCRAM-SHA-256 against `scram_sha_256` (see [`scram`]): the
//! password never crosses the wire. A user without one cannot sign in from PostgreSQL clients
//! (the server warns at startup); `strata hash-password` prints both lines.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use serde::Deserialize;
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::error::{Error, Result};

/// SCRAM-SHA-256 verifiers and the server's half of the exchange.
pub mod scram;

use scram::ScramVerifier;

/// The user `STRATA_PASSWORD` sets the password of.
pub const DEFAULT_USER: &str = "strata";

/// What a user may do beyond running SQL on warehouse tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Queries, DML and DDL on warehouse tables.
    #[default]
    User,
    /// Also statements that read or write files on the server (`COPY INTO` from a local path,
    /// `CREATE EXTERNAL TABLE`, `COPY ... TO`) and runtime settings.
    Admin,
}

/// A caller the server has authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user's name.
    pub user: String,
    /// What the user may do.
    pub role: Role,
    /// The key of the caller's SQL session: its token, or its user when it sends Basic
    /// credentials on every call.
    pub session_key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    users: Vec<UserEntry>,
    #[serde(default)]
    load_locations: Vec<String>,
    #[serde(default)]
    load_endpoints: Vec<String>,
}

/// The server's configuration: `strata.toml` and the environment.
#[derive(Debug, Default)]
pub struct ServerConfig {
    /// Who may connect.
    pub users: Users,
    /// URL prefixes users without the admin role may `COPY INTO` from.
    pub load_locations: Vec<String>,
    /// S3 endpoints users without the admin role may name in `COPY INTO ... ENDPOINT`.
    pub load_endpoints: Vec<String>,
}

impl ServerConfig {
    /// Reads `strata.toml` (if given) and `STRATA_PASSWORD` (if set: user `strata`, admin).
    pub fn load(config: Option<&Path>, strata_password: Option<&str>) -> Result<Self> {
        let mut loaded = ServerConfig::default();
        if let Some(path) = config {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
                path: path.display().to_string(),
                source,
            })?;
            let parsed: ConfigFile = toml::from_str(&text).map_err(|e| Error::Config {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            for user in parsed.users {
                PasswordHash::new(&user.password_hash).map_err(|e| Error::Config {
                    path: path.display().to_string(),
                    reason: format!(
                        "user '{}': password_hash is not an argon2 PHC string ({e}); \
                         create one with `strata hash-password`",
                        user.name
                    ),
                })?;
                if let Some(verifier) = &user.scram_sha_256 {
                    ScramVerifier::parse(verifier).map_err(|e| Error::Config {
                        path: path.display().to_string(),
                        reason: format!(
                            "user '{}': scram_sha_256 is {e}; create one with \
                             `strata hash-password`",
                            user.name
                        ),
                    })?;
                }
                loaded.users.users.insert(user.name.clone(), user);
            }
            loaded.load_locations = parsed.load_locations;
            loaded.load_endpoints = parsed.load_endpoints;
        }
        if let Some(password) = strata_password.filter(|p| !p.is_empty()) {
            loaded.users.add(DEFAULT_USER, password, Role::Admin)?;
        }
        Ok(loaded)
    }
}

#[derive(Debug, Clone, Deserialize)]
struct UserEntry {
    name: String,
    password_hash: String,
    /// The same password's SCRAM-SHA-256 verifier, for PostgreSQL clients.
    #[serde(default)]
    scram_sha_256: Option<String>,
    #[serde(default)]
    role: Role,
}

/// The users who may connect.
#[derive(Debug, Default)]
pub struct Users {
    users: HashMap<String, UserEntry>,
}

impl Users {
    /// Adds (or replaces) a user with a plain password, hashed here.
    pub fn add(&mut self, name: &str, password: &str, role: Role) -> Result<()> {
        let entry = UserEntry {
            name: name.to_string(),
            password_hash: hash_password(password)?,
            scram_sha_256: Some(ScramVerifier::new(password).to_string()),
            role,
        };
        self.users.insert(name.to_string(), entry);
        Ok(())
    }

    /// Whether no user is configured.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The SCRAM-SHA-256 verifier and role of `name`, if they have one.
    fn scram(&self, name: &str) -> Option<(ScramVerifier, Role)> {
        let user = self.users.get(name)?;
        let verifier = ScramVerifier::parse(user.scram_sha_256.as_deref()?).ok()?;
        Some((verifier, user.role))
    }

    /// The role of `name` if `password` is theirs.
    fn verify(&self, name: &str, password: &str) -> Option<Role> {
        let Some(user) = self.users.get(name) else {
            // As slow as a wrong password, so timing does not tell which users exist.
            let _ = hash_password(password);
            return None;
        };
        let hash = PasswordHash::new(&user.password_hash).ok()?;
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .ok()
            .map(|_| user.role)
    }
}

/// An argon2id hash (PHC string) of `password` with a random salt.
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes())
        .map_err(|e| Error::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Hash(e.to_string()))
}

/// A random password for a server started without any configured user.
pub fn random_password() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[derive(Debug, Clone)]
struct Grant {
    user: String,
    role: Role,
    expires: Instant,
}

/// Failed sign-ins of one user, or from one address, in the current window.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    first: Instant,
    last: Instant,
}

/// This many failed sign-ins of a user (or from an address) within [`FAILURE_WINDOW`] lock it
/// out for [`LOCKOUT`]: a locked-out attempt is refused before any password hashing, so
/// guessing costs the server no CPU.
pub const MAX_FAILURES: u32 = 5;
/// The window [`MAX_FAILURES`] counts in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// How long a lockout lasts after the last failure.
pub const LOCKOUT: Duration = Duration::from_secs(60);
/// How long verified Basic credentials are remembered, so a client that sends them on every
/// call costs one argon2 verification, not one per call.
const VERIFIED_LIFETIME: Duration = Duration::from_secs(300);

/// Authenticates calls: Basic credentials, bearer tokens, or nobody at all
/// (`--insecure-no-auth`).
#[derive(Debug)]
pub struct Authenticator {
    /// `None`: authentication is off and every caller is an anonymous `User`.
    users: Option<Users>,
    token_lifetime: Duration,
    tokens: Mutex<HashMap<String, Grant>>,
    /// Recent failures by `user:<name>` and `addr:<ip>`.
    failures: Mutex<HashMap<String, Failures>>,
    /// Credentials verified lately, by user and a keyed digest of the password (never the
    /// password itself).
    verified: Mutex<HashMap<(String, u64), (Role, Instant)>>,
    /// The key of those digests, random per process.
    digest_key: std::collections::hash_map::RandomState,
    /// The key made-up SCRAM verifiers are derived with, random per process.
    scram_secret: [u8; 32],
}

impl Authenticator {
    /// Authentication against `users`, tokens living `token_lifetime`.
    pub fn new(users: Users, token_lifetime: Duration) -> Self {
        Self {
            users: Some(users),
            token_lifetime,
            tokens: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
            digest_key: Default::default(),
            scram_secret: {
                use ring::rand::SecureRandom;
                let mut secret = [0u8; 32];
                // Without randomness the made-up verifiers are still unguessable per name
                // only through the per-process digest key; the system's source never fails
                // on the platforms Strata runs on.
                let _ = ring::rand::SystemRandom::new().fill(&mut secret);
                secret
            },
        }
    }

    /// No authentication: for local experiments only.
    pub fn disabled() -> Self {
        Self {
            users: None,
            ..Self::new(Users::default(), Duration::ZERO)
        }
    }

    /// Whether callers must authenticate.
    pub fn enabled(&self) -> bool {
        self.users.is_some()
    }

    /// The caller of a request, from its `authorization` header; `from` is the caller's
    /// address, for the lockout of an address that keeps failing.
    pub fn authenticate(
        &self,
        metadata: &MetadataMap,
        from: Option<std::net::IpAddr>,
    ) -> Result<Identity, Status> {
        self.authenticate_header(metadata.get("authorization").map(|v| v.as_bytes()), from)
    }

    /// The caller named by an `Authorization` header's value (Basic or Bearer), for any
    /// protocol that carries one (gRPC metadata, HTTP).
    pub fn authenticate_header(
        &self,
        header: Option<&[u8]>,
        from: Option<std::net::IpAddr>,
    ) -> Result<Identity, Status> {
        let Some(users) = &self.users else {
            return Ok(anonymous());
        };
        let header = header.ok_or_else(|| {
            Status::unauthenticated(
                "no credentials: authenticate with a username and password (HTTP Basic) \
                 or a bearer token from the handshake",
            )
        })?;
        let header = std::str::from_utf8(header)
            .ok()
            .filter(|h| h.is_ascii())
            .ok_or_else(|| Status::unauthenticated("authorization header is not ASCII"))?;
        if let Some(token) = strip_scheme(header, "bearer") {
            return self.check_token(token.trim());
        }
        if let Some(encoded) = strip_scheme(header, "basic") {
            let (user, password) = decode_basic(encoded.trim())?;
            let role = self.verify(users, &user, &password, from)?;
            return Ok(Identity {
                session_key: format!("user:{user}"),
                user,
                role,
            });
        }
        Err(Status::unauthenticated(
            "unsupported authorization scheme: use Basic or Bearer",
        ))
    }

    /// Checks a password: remembered credentials first, then the lockouts (before any
    /// hashing), then argon2; the outcome updates both.
    fn verify(
        &self,
        users: &Users,
        user: &str,
        password: &str,
        from: Option<std::net::IpAddr>,
    ) -> Result<Role, Status> {
        use std::hash::BuildHasher;
        let now = Instant::now();
        let key = (user.to_string(), self.digest_key.hash_one((user, password)));
        {
            let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            verified.retain(|_, (_, until)| *until > now);
            if let Some((role, _)) = verified.get(&key) {
                return Ok(*role);
            }
        }
        self.check_lockout(user, from)?;
        let verdict = off_the_workers(|| users.verify(user, password));
        self.note_outcome(user, from, verdict);
        if let Some(role) = verdict {
            self.verified
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, (role, now + VERIFIED_LIFETIME));
        }
        verdict.ok_or_else(|| Status::unauthenticated("invalid username or password"))
    }

    /// Refuses a user, or an address, locked out by recent failures, before any hashing.
    fn check_lockout(&self, user: &str, from: Option<std::net::IpAddr>) -> Result<(), Status> {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.retain(|_, f| now.duration_since(f.last) < FAILURE_WINDOW.max(LOCKOUT));
        for k in failure_keys(user, from).iter().flatten() {
            if let Some(f) = failures.get(k)
                && f.count >= MAX_FAILURES
            {
                let wait = LOCKOUT.saturating_sub(now.duration_since(f.last)).as_secs() + 1;
                let what = if k.starts_with("user:") {
                    format!("of user '{user}'")
                } else {
                    "from this address".to_string()
                };
                return Err(Status::unauthenticated(format!(
                    "too many failed sign-ins {what}; try again in {wait} s"
                )));
            }
        }
        Ok(())
    }

    /// Counts a sign-in's outcome (`Some(role)`: it succeeded) for the lockouts.
    fn note_outcome(&self, user: &str, from: Option<std::net::IpAddr>, verdict: Option<Role>) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let keys = failure_keys(user, from);
        if verdict.is_some() {
            for k in keys.iter().flatten() {
                failures.remove(k);
            }
            return;
        }
        for k in keys.into_iter().flatten() {
            let f = failures.entry(k).or_insert(Failures {
                count: 0,
                first: now,
                last: now,
            });
            if now.duration_since(f.first) > FAILURE_WINDOW {
                *f = Failures {
                    count: 0,
                    first: now,
                    last: now,
                };
            }
            f.count = f.count.saturating_add(1);
            f.last = now;
        }
    }

    /// The SCRAM-SHA-256 verifier a PostgreSQL client named `user` signs in against. A user
    /// without one, or unknown, gets a made-up verifier (the same on every try) that no
    /// password matches, so the exchange does not tell which users exist. A locked-out user or
    /// address is refused here, and again when the proof arrives.
    pub fn scram_verifier(
        &self,
        user: &str,
        from: Option<std::net::IpAddr>,
    ) -> Result<ScramVerifier, Status> {
        self.check_lockout(user, from)?;
        let known = self.users.as_ref().and_then(|users| users.scram(user));
        Ok(match known {
            Some((verifier, _)) => verifier,
            None => ScramVerifier::unknown(&self.scram_secret, user),
        })
    }

    /// Users who cannot sign in from PostgreSQL clients: no `scram_sha_256` in strata.toml.
    pub fn users_without_scram(&self) -> Vec<String> {
        let Some(users) = &self.users else {
            return Vec::new();
        };
        let mut names: Vec<String> = users
            .users
            .keys()
            .filter(|name| users.scram(name).is_none())
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// Records the end of a SCRAM exchange for `user`: their identity when `proved`.
    pub fn scram_outcome(
        &self,
        user: &str,
        from: Option<std::net::IpAddr>,
        proved: bool,
    ) -> Result<Identity, Status> {
        let role = match &self.users {
            None => return Ok(anonymous()),
            Some(users) => users.scram(user).filter(|_| proved).map(|(_, role)| role),
        };
        // Many exchanges may have started before the lockout: each proof is judged under it.
        self.check_lockout(user, from)?;
        self.note_outcome(user, from, role);
        let role = role.ok_or_else(|| Status::unauthenticated("invalid username or password"))?;
        Ok(Identity {
            user: user.to_string(),
            role,
            session_key: format!("user:{user}"),
        })
    }

    /// A new bearer token for an authenticated caller.
    pub fn issue_token(&self, identity: &Identity) -> String {
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut tokens = self.tokens.lock().expect("token lock is never poisoned");
        let now = Instant::now();
        tokens.retain(|_, g| g.expires > now);
        tokens.insert(
            token.clone(),
            Grant {
                user: identity.user.clone(),
                role: identity.role,
                expires: now + self.token_lifetime,
            },
        );
        token
    }

    /// Whether `token` was issued and has not expired.
    pub fn token_is_valid(&self, token: &str) -> bool {
        self.check_token(token).is_ok()
    }

    fn check_token(&self, token: &str) -> Result<Identity, Status> {
        let tokens = self.tokens.lock().expect("token lock is never poisoned");
        match tokens.get(token) {
            Some(g) if g.expires > Instant::now() => Ok(Identity {
                user: g.user.clone(),
                role: g.role,
                session_key: format!("token:{token}"),
            }),
            Some(_) => Err(Status::unauthenticated("token expired: authenticate again")),
            None => Err(Status::unauthenticated("unknown token: authenticate again")),
        }
    }
}

/// Who calls a server without authentication.
fn anonymous() -> Identity {
    Identity {
        user: "anonymous".to_string(),
        role: Role::User,
        session_key: "anonymous".to_string(),
    }
}

/// The lockout counters a sign-in of `user` from `from` counts in.
fn failure_keys(user: &str, from: Option<std::net::IpAddr>) -> [Option<String>; 2] {
    [
        Some(format!("user:{user}")),
        from.map(|ip| format!("addr:{ip}")),
    ]
}

/// Runs argon2 (tens of milliseconds of CPU by design) so that it does not stall the other
/// tasks of a multi-threaded runtime's worker.
fn off_the_workers<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

fn strip_scheme<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = header.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest)
}

/// `user:password` from a Basic credential, padded or not (ADBC omits the padding).
fn decode_basic(encoded: &str) -> Result<(String, String), Status> {
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .map_err(|_| Status::unauthenticated("Basic credentials are not valid base64"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Status::unauthenticated("Basic credentials are not UTF-8"))?;
    let (user, password) = text
        .split_once(':')
        .ok_or_else(|| Status::unauthenticated("Basic credentials lack a ':'"))?;
    Ok((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str, pad: bool) -> MetadataMap {
        let engine = if pad {
            base64::engine::general_purpose::STANDARD
        } else {
            base64::engine::general_purpose::STANDARD_NO_PAD
        };
        let mut m = MetadataMap::new();
        let value = format!("Basic {}", engine.encode(format!("{user}:{password}")));
        m.insert("authorization", value.parse().unwrap());
        m
    }

    #[test]
    fn passwords_are_checked_against_argon2_hashes() {
        let users = ServerConfig::load(None, Some("s3cret")).unwrap().users;
        let auth = Authenticator::new(users, Duration::from_secs(60));
        for pad in [true, false] {
            let who = auth
                .authenticate(&basic("strata", "s3cret", pad), None)
                .unwrap();
            assert_eq!(who.user, "strata");
            assert_eq!(who.role, Role::Admin);
        }
        let wrong = auth
            .authenticate(&basic("strata", "guess", true), None)
            .unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        assert!(
            auth.authenticate(&basic("nobody", "s3cret", true), None)
                .is_err()
        );
        assert!(auth.authenticate(&MetadataMap::new(), None).is_err());
    }

    #[test]
    fn tokens_authenticate_until_they_expire() {
        let mut users = Users::default();
        users.add("alice", "pw", Role::User).unwrap();
        let auth = Authenticator::new(users, Duration::from_millis(200));
        let who = auth
            .authenticate(&basic("alice", "pw", true), None)
            .unwrap();
        let token = auth.issue_token(&who);
        let mut m = MetadataMap::new();
        m.insert("authorization", format!("Bearer {token}").parse().unwrap());
        let again = auth.authenticate(&m, None).unwrap();
        assert_eq!((again.user.as_str(), again.role), ("alice", Role::User));
        std::thread::sleep(Duration::from_millis(250));
        let expired = auth.authenticate(&m, None).unwrap_err();
        assert!(expired.message().contains("expired"), "{expired}");
        let mut forged = MetadataMap::new();
        forged.insert("authorization", "Bearer 1234".parse().unwrap());
        assert!(auth.authenticate(&forged, None).is_err());
    }

    #[test]
    fn config_file_users_need_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strata.toml");
        let hash = hash_password("pw").unwrap();
        std::fs::write(
            &path,
            format!("[[users]]\nname = \"bob\"\npassword_hash = \"{hash}\"\nrole = \"admin\"\n"),
        )
        .unwrap();
        let users = ServerConfig::load(Some(&path), None).unwrap().users;
        assert_eq!(users.verify("bob", "pw"), Some(Role::Admin));
        assert_eq!(users.verify("bob", "nope"), None);

        std::fs::write(
            &path,
            "[[users]]\nname = \"eve\"\npassword_hash = \"plain\"\n",
        )
        .unwrap();
        let err = ServerConfig::load(Some(&path), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("user 'eve'") && err.contains("hash-password"),
            "{err}"
        );
    }

    /// Guessing a password locks the user, and the address, out after MAX_FAILURES tries:
    /// later attempts are refused without hashing, even the right password; other users and
    /// addresses are not affected. Verified credentials are remembered, so a client sending
    /// them on every call is not hashed every time.
    #[test]
    fn repeated_failures_lock_out_without_hashing() {
        let mut users = Users::default();
        users.add("alice", "right", Role::User).unwrap();
        users.add("bob", "bobs", Role::User).unwrap();
        let auth = Authenticator::new(users, Duration::from_secs(60));
        let attacker: std::net::IpAddr = "10.0.0.9".parse().unwrap();
        let elsewhere: std::net::IpAddr = "10.0.0.10".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            let e = auth
                .authenticate(&basic("alice", "guess", true), Some(attacker))
                .unwrap_err();
            assert!(e.message().contains("invalid username or password"), "{e}");
        }
        let started = Instant::now();
        for _ in 0..100 {
            let e = auth
                .authenticate(&basic("alice", "right", true), Some(elsewhere))
                .unwrap_err();
            assert!(
                e.message()
                    .contains("too many failed sign-ins of user 'alice'"),
                "{e}"
            );
        }
        // A hundred refusals without argon2 take far less than one verification each.
        assert!(started.elapsed() < Duration::from_millis(500));
        let e = auth
            .authenticate(&basic("bob", "bobs", true), Some(attacker))
            .unwrap_err();
        assert!(e.message().contains("from this address"), "{e}");
        assert!(
            auth.authenticate(&basic("bob", "bobs", true), Some(elsewhere))
                .is_ok()
        );
        // Remembered: the same credentials again cost no verification.
        let started = Instant::now();
        for _ in 0..100 {
            auth.authenticate(&basic("bob", "bobs", true), Some(elsewhere))
                .unwrap();
        }
        assert!(started.elapsed() < Duration::from_millis(500));
    }
}
