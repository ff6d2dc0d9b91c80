//! SCRAM-SHA-256 (RFC 5802 and RFC 7677): how PostgreSQL clients prove they know a password
//! without sending it, against a verifier that does not let its reader sign in.
//!
//! A [`ScramVerifier`] is PostgreSQL's stored form,
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64), made by
//! `strata hash-password` beside the argon2 hash, or derived from `STRATA_PASSWORD` at startup.
//! [`ScramExchange`] is the server's half of one sign-in: it answers the client's first
//! message with a nonce, salt and iteration count, then checks the client's proof and signs
//! its answer with the ServerKey, so the client knows the server holds the verifier.
//!
//! Every PostgreSQL sign-in is SCRAM, whoever the user: one without a verifier (or unknown)
//! gets a made-up one ([`ScramVerifier::unknown`]) and fails like a wrong password, so the
//! exchange never tells which users exist.
//!
//! Channel binding (`SCRAM-SHA-256-PLUS`) is not offered; over TLS, clients that could bind
//! send the `y` flag, which is accepted as RFC 5802 says.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::{digest, hmac, pbkdf2, rand::SecureRandom};

/// PBKDF2 iterations of new verifiers: PostgreSQL's default.
pub const ITERATIONS: u32 = 4096;
/// The mechanism's name, as clients ask for it.
pub const MECHANISM: &str = "SCRAM-SHA-256";
/// Longest SCRAM message accepted (a name, nonces and a proof fit in far less).
const MAX_MESSAGE_BYTES: usize = 4096;

/// Why an exchange failed. The client only ever learns that the password was wrong or the
/// message malformed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    /// The client's message does not follow RFC 5802.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The proof does not match the verifier.
    #[error("password authentication failed")]
    WrongPassword,
}

/// PostgreSQL's stored SCRAM-SHA-256 secret of one password.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys stay out of logs and panics, like password hashes.
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramVerifier {
    /// The verifier of `password` with a random salt.
    pub fn new(password: &str) -> Self {
        let mut salt = vec![0u8; 16];
        ring::rand::SystemRandom::new()
            .fill(&mut salt)
            .expect("the system's random source works");
        Self::with_salt(password, salt, ITERATIONS)
    }

    /// The verifier of `password` with `salt` and `iterations`.
    pub fn with_salt(password: &str, salt: Vec<u8>, iterations: u32) -> Self {
        let salted = salted_password(password, &salt, iterations);
        let client_key = hmac_sha256(&salted, b"Client Key");
        let stored_key = digest::digest(&digest::SHA256, &client_key)
            .as_ref()
            .to_vec();
        let server_key = hmac_sha256(&salted, b"Server Key");
        Self {
            iterations,
            salt,
            stored_key,
            server_key,
        }
    }

    /// A verifier for a user who has none (or does not exist), derived from `secret` and the
    /// name: the same on every try, shaped like a real one, made as fast as a real one is read
    /// (no PBKDF2), and matching no password.
    pub(crate) fn unknown(secret: &[u8], user: &str) -> Self {
        let derive = |what: &str| hmac_sha256(secret, format!("{what}\0{user}").as_bytes());
        Self {
            iterations: ITERATIONS,
            salt: derive("salt")[..16].to_vec(),
            stored_key: derive("stored"),
            server_key: derive("server"),
        }
    }

    /// Parses PostgreSQL's form, `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |what: &str| format!("not a SCRAM-SHA-256 verifier ({what})");
        let rest = text
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or_else(|| bad("it must start with SCRAM-SHA-256$"))?;
        let (params, keys) = rest.split_once('$').ok_or_else(|| bad("no keys"))?;
        let (iterations, salt) = params.split_once(':').ok_or_else(|| bad("no salt"))?;
        let (stored, server) = keys.split_once(':').ok_or_else(|| bad("no ServerKey"))?;
        let iterations: u32 = iterations
            .parse()
            .ok()
            .filter(|i| *i > 0)
            .ok_or_else(|| bad("iterations"))?;
        let decode = |s: &str, what: &str| BASE64.decode(s).map_err(|_| bad(what));
        let verifier = Self {
            iterations,
            salt: decode(salt, "salt")?,
            stored_key: decode(stored, "StoredKey")?,
            server_key: decode(server, "ServerKey")?,
        };
        if verifier.stored_key.len() != 32 || verifier.server_key.len() != 32 {
            return Err(bad("keys must be 32 bytes"));
        }
        Ok(verifier)
    }
}

impl std::fmt::Display for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            BASE64.encode(&self.salt),
            BASE64.encode(&self.stored_key),
            BASE64.encode(&self.server_key)
        )
    }
}

/// The server's half of one exchange, between its first message and the client's proof.
#[derive(Debug)]
pub struct ScramExchange {
    verifier: ScramVerifier,
    /// `c=` the client must echo: base64 of its GS2 header.
    channel_binding: String,
    nonce: String,
    /// client-first-message-bare "," server-first-message: the start of the AuthMessage.
    messages: String,
}

impl ScramExchange {
    /// Answers the client's first message (`n,,n=user,r=nonce`) for `verifier`: returns the
    /// exchange and the server's first message.
    pub fn start(
        verifier: ScramVerifier,
        client_first: &[u8],
    ) -> Result<(Self, String), ScramError> {
        let text = message_text(client_first)?;
        // GS2 header: `n` (no binding), `y` (client could bind, server offered none); `p=`
        // asks for binding, which is not offered. An authzid (`a=`) is not supported.
        let mut parts = text.splitn(3, ',');
        let flag = parts.next().ok_or(ScramError::Malformed("no GS2 header"))?;
        let authzid = parts.next().ok_or(ScramError::Malformed("no GS2 header"))?;
        let bare = parts
            .next()
            .ok_or(ScramError::Malformed("no client nonce"))?;
        if !matches!(flag, "n" | "y") {
            return Err(ScramError::Malformed("channel binding is not offered"));
        }
        if !authzid.is_empty() {
            return Err(ScramError::Malformed(
                "authorization identities are not supported",
            ));
        }
        let client_nonce = bare
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .filter(|n| !n.is_empty())
            .ok_or(ScramError::Malformed("no client nonce"))?;
        let mut random = [0u8; 18];
        ring::rand::SystemRandom::new()
            .fill(&mut random)
            .map_err(|_| ScramError::Malformed("no randomness"))?;
        let nonce = format!("{client_nonce}{}", BASE64.encode(random));
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&verifier.salt),
            verifier.iterations
        );
        let exchange = Self {
            verifier,
            channel_binding: BASE64.encode(format!("{flag},{authzid},")),
            nonce,
            messages: format!("{bare},{server_first}"),
        };
        Ok((exchange, server_first))
    }

    /// Checks the client's final message (`c=..,r=..,p=proof`) and returns the server's
    /// final message (`v=signature`).
    pub fn finish(&self, client_final: &[u8]) -> Result<String, ScramError> {
        let text = message_text(client_final)?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut binding = None;
        let mut nonce = None;
        for attribute in without_proof.split(',') {
            if let Some(v) = attribute.strip_prefix("c=") {
                binding = Some(v);
            } else if let Some(v) = attribute.strip_prefix("r=") {
                nonce = Some(v);
            }
        }
        if binding != Some(self.channel_binding.as_str()) {
            return Err(ScramError::Malformed("channel binding does not match"));
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(ScramError::Malformed("nonce does not match"));
        }
        let proof = BASE64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        if proof.len() != self.verifier.stored_key.len() {
            return Err(ScramError::WrongPassword);
        }
        let auth_message = format!("{},{without_proof}", self.messages);
        let signature = hmac_sha256(&self.verifier.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        let stored = digest::digest(&digest::SHA256, &client_key);
        let same = stored
            .as_ref()
            .iter()
            .zip(&self.verifier.stored_key)
            .fold(0u8, |d, (a, b)| d | (a ^ b))
            == 0;
        if !same {
            return Err(ScramError::WrongPassword);
        }
        let server_signature = hmac_sha256(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", BASE64.encode(server_signature)))
    }
}

fn message_text(message: &[u8]) -> Result<&str, ScramError> {
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(ScramError::Malformed("message too long"));
    }
    std::str::from_utf8(message).map_err(|_| ScramError::Malformed("message is not UTF-8"))
}

/// Hi(Normalize(password), salt, i): PBKDF2-HMAC-SHA-256. Passwords are SASLprep-normalized
/// as PostgreSQL does, falling back to their raw bytes when they cannot be.
fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let normalized = stringprep::saslprep(password)
        .map(|p| p.into_owned())
        .unwrap_or_else(|_| password.to_string());
    let mut out = [0u8; 32];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(iterations).unwrap_or(std::num::NonZeroU32::MIN),
        salt,
        normalized.as_bytes(),
        &mut out,
    );
    out
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), message)
        .as_ref()
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client's side, as libpq computes it.
    fn client_final(password: &str, server_first: &str, client_first_bare: &str) -> String {
        let mut salt = None;
        let mut iterations = 0;
        let mut nonce = "";
        for a in server_first.split(',') {
            if let Some(v) = a.strip_prefix("s=") {
                salt = Some(BASE64.decode(v).unwrap());
            } else if let Some(v) = a.strip_prefix("i=") {
                iterations = v.parse().unwrap();
            } else if let Some(v) = a.strip_prefix("r=") {
                nonce = v;
            }
        }
        let salted = salted_password(password, &salt.unwrap(), iterations);
        let client_key = hmac_sha256(&salted, b"Client Key");
        let stored_key = digest::digest(&digest::SHA256, &client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac_sha256(stored_key.as_ref(), auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        format!("{without_proof},p={}", BASE64.encode(proof))
    }

    #[test]
    fn the_right_password_signs_in_and_a_wrong_one_does_not() {
        let verifier = ScramVerifier::parse(&ScramVerifier::new("pencil").to_string()).unwrap();
        for (password, expected) in [("pencil", true), ("pen", false), ("", false)] {
            let bare = "n=alice,r=rOprNGfwEbeRWgbNEkqO";
            let (exchange, server_first) =
                ScramExchange::start(verifier.clone(), format!("n,,{bare}").as_bytes()).unwrap();
            let outcome = exchange.finish(client_final(password, &server_first, bare).as_bytes());
            assert_eq!(outcome.is_ok(), expected, "{password}");
        }
    }

    #[test]
    fn a_known_verifier_matches_postgresql() {
        // The RFC 7677 example: user "user", password "pencil", its salt and iterations.
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let verifier = ScramVerifier::with_salt("pencil", salt, 4096);
        let bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                            s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let exchange = ScramExchange {
            verifier,
            channel_binding: "biws".to_string(),
            nonce: "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".to_string(),
            messages: format!("{bare},{server_first}"),
        };
        let server_final = exchange
            .finish(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                  p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .unwrap();
        assert_eq!(
            server_final,
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn hostile_messages_are_refused_not_panicked_on() {
        let verifier = ScramVerifier::new("pencil");
        for message in [
            &b""[..],
            b"n,,",
            b"p=tls-server-end-point,,n=a,r=x",
            b"n,a=bob,n=a,r=x",
            b"\xff\xfe",
            &[b'n'; 5000],
        ] {
            assert!(ScramExchange::start(verifier.clone(), message).is_err());
        }
        let (exchange, _) = ScramExchange::start(verifier.clone(), b"n,,n=a,r=abc").unwrap();
        for message in [
            &b""[..],
            b"c=biws,r=abc",
            b"c=biws,r=wrong,p=AAAA",
            b"c=x,p=%%%",
        ] {
            assert!(exchange.finish(message).is_err());
        }
        for text in [
            "",
            "SCRAM-SHA-256$",
            "SCRAM-SHA-256$0:AA==$AA==:AA==",
            "md5abc",
        ] {
            assert!(ScramVerifier::parse(text).is_err(), "{text}");
        }
    }
}
