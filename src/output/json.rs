//! `--json`: one JSON object per event per line.

use std::io::Write;

use super::{Event, Sink};

pub struct JsonSink<W: Write + Send> {
    out: W,
}

impl<W: Write + Send> JsonSink<W> {
    pub fn new(out: W) -> Self {
        JsonSink { out }
    }
}

impl<W: Write + Send> Sink for JsonSink<W> {
    fn handle(&mut self, event: &Event) {
        if let Ok(line) = serde_json::to_string(event) {
            let _ = writeln!(self.out, "{line}");
            let _ = self.out.flush();
        }
    }
}
