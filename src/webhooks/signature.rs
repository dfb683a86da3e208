//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "{webhook-id}.{webhook-timestamp}.{body}">`, keyed by the endpoint secret, which is
//! shown to the admin as `whsec_<base64 of 32 random bytes>` (what the reference
//! libraries, e.g. Python's `standardwebhooks`, take). RustCrypto's `hmac`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const PREFIX: &str = "whsec_";
/// Secret bytes: 256 bits, the HMAC-SHA256 block-size-safe maximum strength.
const SECRET_BYTES: usize = 32;

/// An endpoint's signing secret (the raw key bytes). `Debug` hides them.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl WebhookSecret {
    pub fn generate() -> Self {
        Self(rand::random::<[u8; SECRET_BYTES]>().to_vec())
    }

    /// `whsec_…` as shown once to the admin and stored for signing.
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.0))
    }

    pub fn parse(text: &str) -> Option<Self> {
        let b64 = text.strip_prefix(PREFIX)?;
        let bytes = STANDARD.decode(b64).ok()?;
        (!bytes.is_empty()).then_some(Self(bytes))
    }

    /// The `webhook-signature` header value for one message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks reference libraries' test suites.
    #[test]
    fn signs_the_reference_example() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_round_trip_and_bad_ones_are_refused() {
        let s = WebhookSecret::generate();
        assert_eq!(WebhookSecret::parse(&s.expose()), Some(s.clone()));
        assert!(s.expose().starts_with("whsec_"));
        assert_eq!(format!("{s:?}"), "WebhookSecret(..)");
        for bad in ["", "whsec_", "whsec_!!", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"] {
            assert!(WebhookSecret::parse(bad).is_none(), "{bad}");
        }
    }
}
