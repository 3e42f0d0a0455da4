//! Streaming `COPY ... FROM STDIN` in text format: rows are encoded into a buffer that is sent
//! whenever it grows past a chunk, so memory stays flat whatever the table size.

use anyhow::{Context, Result};
use bytes::{Bytes, BytesMut};
use futures_util::SinkExt;
use std::pin::Pin;
use tokio_postgres::{Client, CopyInSink};

const CHUNK: usize = 256 * 1024;

pub struct CopyIn {
    table: String,
    sink: Pin<Box<CopyInSink<Bytes>>>,
    buf: BytesMut,
    row_open: bool,
    rows: u64,
}

impl CopyIn {
    /// Start `COPY table (columns) FROM STDIN`; column names are quoted as given.
    pub async fn start(client: &Client, table: &str, columns: &[&str]) -> Result<Self> {
        let cols: Vec<String> = columns.iter().map(|c| crate::sql::ident(c)).collect();
        let sql = format!("COPY {table} ({}) FROM STDIN", cols.join(", "));
        let sink = client
            .copy_in(sql.as_str())
            .await
            .with_context(|| format!("cannot start COPY into {table}"))?;
        Ok(Self {
            table: table.to_string(),
            sink: Box::pin(sink),
            buf: BytesMut::with_capacity(CHUNK + 4096),
            row_open: false,
            rows: 0,
        })
    }

    fn sep(&mut self) {
        if self.row_open {
            self.buf.extend_from_slice(b"\t");
        }
        self.row_open = true;
    }

    pub fn text(&mut self, value: &str) -> &mut Self {
        self.sep();
        for b in value.bytes() {
            match b {
                b'\\' => self.buf.extend_from_slice(b"\\\\"),
                b'\t' => self.buf.extend_from_slice(b"\\t"),
                b'\n' => self.buf.extend_from_slice(b"\\n"),
                b'\r' => self.buf.extend_from_slice(b"\\r"),
                _ => self.buf.extend_from_slice(&[b]),
            }
        }
        self
    }

    pub fn null(&mut self) -> &mut Self {
        self.sep();
        self.buf.extend_from_slice(b"\\N");
        self
    }

    pub fn opt<S: AsRef<str>>(&mut self, value: Option<S>) -> &mut Self {
        match value {
            Some(v) => self.text(v.as_ref()),
            None => self.null(),
        }
    }

    pub fn display<T: std::fmt::Display>(&mut self, value: T) -> &mut Self {
        self.text(&value.to_string())
    }

    /// End the row; sends the buffer when it is full.
    pub async fn end_row(&mut self) -> Result<()> {
        self.buf.extend_from_slice(b"\n");
        self.row_open = false;
        self.rows += 1;
        if self.buf.len() >= CHUNK {
            let chunk = self.buf.split().freeze();
            self.sink
                .send(chunk)
                .await
                .with_context(|| format!("COPY into {} failed", self.table))?;
        }
        Ok(())
    }

    /// Send what is left and finish; returns the number of rows the server took.
    pub async fn finish(mut self) -> Result<u64> {
        if !self.buf.is_empty() {
            let chunk = self.buf.split().freeze();
            self.sink
                .send(chunk)
                .await
                .with_context(|| format!("COPY into {} failed", self.table))?;
        }
        let rows = self
            .sink
            .as_mut()
            .finish()
            .await
            .with_context(|| format!("COPY into {} failed", self.table))?;
        debug_assert_eq!(rows, self.rows);
        Ok(rows)
    }
}
