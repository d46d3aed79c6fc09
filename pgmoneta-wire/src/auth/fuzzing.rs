//! Invariants of the server side of the remote management port's handshake (start-up message,
//! SASL messages, SCRAM-SHA-256), checked by the fuzz target `scram_server` and by the test
//! that replays its seed corpus.

use std::sync::OnceLock;

use bytes::BytesMut;

use super::scram::{ScramClient, ScramServer, ScramVerifier};
use crate::message::frontend::{AuthResponseKind, FrontendDecoder, FrontendMessage};

/// The password the fuzzed server knows.
pub const PASSWORD: &str = "fuzzing secret";

fn verifier() -> ScramVerifier {
    static V: OnceLock<String> = OnceLock::new();
    let text = V.get_or_init(|| ScramVerifier::new(PASSWORD, b"fuzzing-salt-16b", 4096).to_string());
    ScramVerifier::parse(text).expect("our own verifier parses")
}

/// Plays the daemon's side of the handshake on `data` as a client's byte stream: a start-up
/// message, a SASLInitialResponse, a SASLResponse, against `server`. `Some(true)` when the
/// client authenticated, `Some(false)` or `None` when it was refused (at the message that
/// failed to parse: `None`).
pub fn play(data: &[u8], server: &mut ScramServer) -> Option<bool> {
    let mut decoder = FrontendDecoder::new();
    let mut buf = BytesMut::from(data);
    let FrontendMessage::Startup { .. } = decoder.decode(&mut buf).ok()?? else { return Some(false) };
    decoder.expect_auth_response(AuthResponseKind::SaslInitial);
    let FrontendMessage::SaslInitialResponse { data: first, .. } = decoder.decode(&mut buf).ok()?? else {
        return Some(false);
    };
    server.handle_client_first(first.as_deref().unwrap_or_default()).ok()?;
    decoder.expect_auth_response(AuthResponseKind::Sasl);
    let FrontendMessage::SaslResponse { data: last } = decoder.decode(&mut buf).ok()?? else {
        return Some(false);
    };
    let ok = server.handle_client_final(&last).is_ok();
    Some(ok && server.is_authenticated())
}

/// A server knowing [`PASSWORD`] whose nonce part is fixed (for recorded transcripts).
pub fn fixed_server() -> ScramServer {
    ScramServer::with_nonce(verifier(), "fuzzservernonce")
}

/// [`play`]s `data` against a server with a fresh random nonce, as the daemon's: no panic, and
/// no byte stream authenticates, not even a recorded valid handshake (the nonce differs). Then,
/// for inputs whose length is a multiple of 32, runs a real client whose nonce
/// comes from `data`: it authenticates with the right password and is refused with a wrong one.
///
/// # Panics
/// When an invariant does not hold.
pub fn check_scram_server(data: &[u8]) {
    let authenticated = play(data, &mut ScramServer::new(verifier()));
    assert_ne!(authenticated, Some(true), "a byte stream authenticated against a fresh nonce");
    // A well-behaved client with a nonce made of the input's printable bytes (for one input
    // in 32: its key derivation is most of an execution's time).
    if data.len() % 32 != 0 {
        return;
    }
    let nonce: String = data.iter().filter(|b| (0x21..=0x7e).contains(*b) && **b != b',').map(|&b| b as char).collect();
    let nonce = if nonce.is_empty() { "n".to_owned() } else { nonce };
    for (password, expected) in [(PASSWORD, true), ("not the secret", false)] {
        let mut server = fixed_server();
        let mut client = ScramClient::with_nonce("admin", password, &nonce);
        let server_first = server.handle_client_first(&client.client_first()).expect("a client-first we wrote");
        let client_final = client.update(&server_first).expect("a server-first we wrote");
        let result = server.handle_client_final(&client_final);
        assert_eq!(result.is_ok() && server.is_authenticated(), expected, "password {password:?}");
        if let Ok(server_final) = result {
            client.finish(&server_final).expect("the client accepts the server's proof");
        }
    }
}
