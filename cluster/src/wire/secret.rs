//! The cluster secret: proof, on the peer handshake, that both ends know it,
//! without sending it.
//!
//! Each side sends a fresh random nonce; each then proves knowledge of the
//! secret with an HMAC-SHA256 over a role label, both nonces and both node
//! ids. The labels differ per side, so a proof cannot be reflected back; the
//! nonces make each proof good for one handshake only, so a recorded one
//! cannot be replayed. An eavesdropper learns nothing of the secret (the
//! traffic after the handshake is not encrypted: run the peer port on a
//! trusted network or under a tunnel).

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::version::NodeId;

/// Bytes of a handshake nonce.
pub const NONCE_BYTES: usize = 16;
/// Bytes of a proof (HMAC-SHA256).
pub const PROOF_BYTES: usize = 32;

/// A handshake nonce.
pub type Nonce = [u8; NONCE_BYTES];
/// A proof of the secret for one handshake.
pub type Proof = [u8; PROOF_BYTES];

/// Which side of the handshake a proof is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The node that opened the connection.
    Connecting,
    /// The node that accepted it.
    Accepting,
}

impl Side {
    fn label(self) -> &'static [u8] {
        match self {
            Side::Connecting => b"dynamo peer handshake: connecting side",
            Side::Accepting => b"dynamo peer handshake: accepting side",
        }
    }
}

/// What one handshake's proofs are bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    /// The connecting node's id and nonce.
    pub connecting: (NodeId, Nonce),
    /// The accepting node's id and nonce.
    pub accepting: (NodeId, Nonce),
}

/// The shared secret of a cluster (`cluster-secret`).
#[derive(Clone)]
pub struct ClusterSecret(Arc<[u8]>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

impl ClusterSecret {
    /// The secret from its configured text.
    pub fn new(secret: &[u8]) -> ClusterSecret {
        ClusterSecret(secret.into())
    }

    fn mac(&self, side: Side, exchange: &Exchange) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(side.label());
        mac.update(&exchange.connecting.0.to_be_bytes());
        mac.update(&exchange.connecting.1);
        mac.update(&exchange.accepting.0.to_be_bytes());
        mac.update(&exchange.accepting.1);
        mac
    }

    /// `side`'s proof for this exchange.
    pub fn prove(&self, side: Side, exchange: &Exchange) -> Proof {
        self.mac(side, exchange).finalize().into_bytes().into()
    }

    /// Whether `proof` is `side`'s proof for this exchange (compared in
    /// constant time).
    pub fn verify(&self, side: Side, exchange: &Exchange, proof: &Proof) -> bool {
        self.mac(side, exchange).verify_slice(proof).is_ok()
    }
}

/// A fresh nonce from the operating system's random source.
pub fn nonce() -> Nonce {
    let mut nonce = [0; NONCE_BYTES];
    if getrandom::fill(&mut nonce).is_err() {
        // No OS randomness: fall back to a time-seeded generator, weaker
        // against replay but never the same nonce twice in a row.
        nonce.iter_mut().for_each(|b| *b = fastrand::u8(..));
    }
    nonce
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange() -> Exchange {
        Exchange {
            connecting: (1, nonce()),
            accepting: (2, nonce()),
        }
    }

    #[test]
    fn proofs_check_out_only_for_the_same_secret_side_and_exchange() {
        let secret = ClusterSecret::new(b"s3cret");
        let e = exchange();
        let proof = secret.prove(Side::Connecting, &e);
        assert!(secret.verify(Side::Connecting, &e, &proof));
        // Another secret, the other side (reflection), another exchange
        // (replay) or a changed byte: refused.
        assert!(!ClusterSecret::new(b"s3cret!").verify(Side::Connecting, &e, &proof));
        assert!(!secret.verify(Side::Accepting, &e, &proof));
        assert!(!secret.verify(Side::Connecting, &exchange(), &proof));
        let mut bent = proof;
        bent[0] ^= 1;
        assert!(!secret.verify(Side::Connecting, &e, &bent));
        let other_ids = Exchange {
            connecting: (3, e.connecting.1),
            ..e
        };
        assert!(!secret.verify(Side::Connecting, &other_ids, &proof));
    }

    #[test]
    fn nonces_differ_and_the_secret_is_not_printed() {
        assert_ne!(nonce(), nonce());
        assert!(!format!("{:?}", ClusterSecret::new(b"s3cret")).contains("s3cret"));
    }
}
