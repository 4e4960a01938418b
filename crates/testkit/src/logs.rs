//! Everything the process logs through `tracing`, as text, to look for what must never be
//! logged (credentials, keys, query strings).
//!
//! [`capture`] installs, once per process, a global `tracing-subscriber` registry with a `fmt`
//! layer that writes into a shared buffer: every level (nothing is filtered), no colours, each
//! event with its target, its fields and the fields of every span it is in. Span fields are
//! also written when the span is created and when it closes (`FmtSpan::NEW | FmtSpan::CLOSE`),
//! so a secret is caught whether it is an event field, a span field given at creation, or one
//! recorded into a span later, even in a span no event is logged in.
//!
//! Values are written as `fmt` writes them: strings `Debug`-quoted (`key="value"`), messages as
//! they are.

use std::io;
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

/// What the process has logged since the first [`capture`]; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// All that was logged so far, one line per event (and per span created or closed).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

/// What every thread of this process has logged since the first call. The first call installs
/// the global subscriber (and panics if another one is installed); later calls return the
/// same buffer.
pub fn capture() -> Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_target(true)
            .with_span_events(FmtSpan::NEW | FmtSpan::CLOSE);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
        logs
    })
    .clone()
}
