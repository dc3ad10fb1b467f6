//! Where alerts go: the [`AlertSink`] trait and the sinks that need no network.

use std::io::Write;

use super::Alert;
use crate::error::{Error, Result};

/// Receives alerts. Implement it to deliver alerts anywhere (the C ABI wraps a callback in
/// one). A sink that fails does not stop the protection: the policy engine counts the
/// failure ([`crate::policy::GuardStats::undelivered`]) and goes on.
pub trait AlertSink {
    /// Deliver one alert.
    ///
    /// # Errors
    /// The sink could not take it (I/O, network).
    fn send(&mut self, alert: &Alert) -> Result<()>;
}

/// One JSON object per line ([`Alert::to_json`]), flushed after each alert, to any writer
/// (stdout, a file, a pipe).
#[derive(Debug)]
pub struct JsonLines<W: Write> {
    out: W,
    name: String,
}

impl<W: Write> JsonLines<W> {
    /// Alerts to `out`; `name` says what it is in errors (`"stdout"`, a file name).
    pub fn new(out: W, name: impl Into<String>) -> Self {
        JsonLines {
            out,
            name: name.into(),
        }
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> AlertSink for JsonLines<W> {
    fn send(&mut self, alert: &Alert) -> Result<()> {
        let mut line = alert.to_json().to_string();
        line.push('\n');
        self.out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.flush())
            .map_err(|e| Error::io(&self.name, e))
    }
}

/// A closure as a sink.
pub struct Callback<F: FnMut(&Alert) -> Result<()>>(pub F);

impl<F: FnMut(&Alert) -> Result<()>> AlertSink for Callback<F> {
    fn send(&mut self, alert: &Alert) -> Result<()> {
        (self.0)(alert)
    }
}

/// Several sinks: each alert goes to every one.
#[derive(Default)]
pub struct Sinks(Vec<Box<dyn AlertSink>>);

impl std::fmt::Debug for Sinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sinks({})", self.0.len())
    }
}

impl Sinks {
    /// No sinks.
    pub fn new() -> Self {
        Sinks(Vec::new())
    }

    /// Add a sink.
    pub fn push(&mut self, sink: Box<dyn AlertSink>) {
        self.0.push(sink);
    }

    /// How many sinks there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl AlertSink for Sinks {
    /// Every sink is tried; the first failure is returned.
    fn send(&mut self, alert: &Alert) -> Result<()> {
        let mut first = None;
        for s in &mut self.0 {
            if let Err(e) = s.send(alert) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}
