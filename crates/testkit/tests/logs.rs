//! The capture catches a secret wherever `tracing` carries it: in an event field, in a span
//! field given when the span is created (even if no event is logged in it), and in a span
//! field recorded later; at every level.

use valet_testkit::logs;

#[test]
fn a_secret_is_caught_in_event_fields_span_fields_and_recorded_fields() {
    let logs = logs::capture();
    assert!(!logs.text().contains("secret-"), "{}", logs.text());

    tracing::trace!(target: "valet::access", key = "secret-in-an-event", "served");
    let text = logs.text();
    assert!(text.contains("valet::access"), "{text}");
    assert!(text.contains("secret-in-an-event"), "{text}");

    let quiet = tracing::debug_span!("request", key = %"secret-in-a-span");
    let _entered = quiet.enter();
    assert!(logs.text().contains("secret-in-a-span"), "{}", logs.text());

    let later = tracing::info_span!("upload", key = tracing::field::Empty);
    later.record("key", "secret-recorded-later");
    drop(later);
    assert!(
        logs.text().contains("secret-recorded-later"),
        "{}",
        logs.text()
    );

    // The same buffer, whoever asks.
    assert_eq!(logs::capture().text(), logs.text());
}
