//! Statements that work through a transaction-mode pooler (Supabase's transaction pooler on
//! port 6543, PgBouncer's `pool_mode = transaction`), where each transaction, and each statement
//! outside one, may run on another server connection shared with other clients:
//!
//! - outside a transaction, a statement goes in one round trip and leaves no named prepared
//!   statement behind: [`query`], [`query_one`] and [`execute`] (unnamed statements with their
//!   parameter types given), or the simple protocol (`batch_execute`, `simple_query`).
//!   tokio-postgres's `query`/`execute` with a `&str` prepare a statement named `s0`, `s1`, ...
//!   in one round trip and run it in another; through the pooler the two may reach different
//!   servers, and a name left on a server collides with another client's
//!   (`prepared statement "s82" already exists`);
//! - inside a transaction the server connection stays the same, so named statements are fine
//!   as long as none outlives it: [`Tx`] closes them all before `COMMIT` or `ROLLBACK`,
//!   including the type-lookup statements tokio-postgres caches for the life of a connection;
//! - nothing relies on session state: settings are `SET LOCAL`, temporary tables
//!   `ON COMMIT DROP`, the advisory lock transaction-scoped;
//! - statements whose answers are needed only later go together ([`pipelined`],
//!   [`pipelined2`]): each future sends its request when first polled, in the order given,
//!   before any answer is back, and tokio-postgres pipelines them on the connection. The server
//!   runs them in the order sent; inside a transaction, after one fails the ones behind it fail
//!   too ("current transaction is aborted"), so every answer is awaited and the first error in
//!   that order is the one returned. This holds for requests that go out in one piece
//!   ([`query`], [`query_one`], [`query_opt`], [`execute`], `batch_execute`); a statement
//!   tokio-postgres prepares first waits for that answer before it sends the rest.

use futures_util::future::{maybe_done, MaybeDone};
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::task::Poll;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Error, GenericClient, Row, Transaction};

fn typed<'a>(
    params: &'a [&'a (dyn ToSql + Sync)],
    types: &[Type],
) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    assert_eq!(
        params.len(),
        types.len(),
        "one type per parameter of an unnamed statement"
    );
    params.iter().copied().zip(types.iter().cloned()).collect()
}

/// Rows of one unnamed statement, in one round trip; `types` gives each parameter's type.
pub async fn query(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    types: &[Type],
) -> Result<Vec<Row>, Error> {
    client.query_typed(sql, &typed(params, types)).await
}

/// The one row of an unnamed statement (see [`query`]).
pub async fn query_one(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    types: &[Type],
) -> Result<Row, Error> {
    client.query_typed_one(sql, &typed(params, types)).await
}

/// At most one row of an unnamed statement (see [`query`]); more than one is an error, as
/// with tokio-postgres's `query_opt`.
pub async fn query_opt(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    types: &[Type],
) -> Result<Option<Row>, Error> {
    client.query_typed_opt(sql, &typed(params, types)).await
}

/// Run an unnamed statement (see [`query`]); returns the rows it affected.
pub async fn execute(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    types: &[Type],
) -> Result<u64, Error> {
    client.execute_typed(sql, &typed(params, types)).await
}

/// Run statements together (see the module docs): every future is polled in the order given,
/// so their requests go out in that order, and all of them are awaited. Returns every result in
/// order, or the first error in that order: the cause, not the "current transaction is aborted"
/// of a statement behind it, whichever answer arrives or is looked at first.
pub async fn pipelined<T, E, F>(statements: impl IntoIterator<Item = F>) -> Result<Vec<T>, E>
where
    F: Future<Output = Result<T, E>>,
{
    let mut all: Vec<Pin<Box<MaybeDone<F>>>> = statements
        .into_iter()
        .map(|f| Box::pin(maybe_done(f)))
        .collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for f in all.iter_mut() {
            pending |= f.as_mut().poll(cx).is_pending();
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    all.iter_mut()
        .map(|f| {
            f.as_mut()
                .take_output()
                .expect("every statement was awaited")
        })
        .collect()
}

/// [`pipelined`] for two statements of different results: `a`'s request goes first, and its
/// error, if any, is the one returned.
pub async fn pipelined2<A, B, E>(
    a: impl Future<Output = Result<A, E>>,
    b: impl Future<Output = Result<B, E>>,
) -> Result<(A, B), E> {
    let (a, b) = futures_util::future::join(a, b).await;
    Ok((a?, b?))
}

/// A transaction that leaves no prepared statement on its server connection when it ends,
/// however it ends. It derefs to the [`Transaction`] for the statements inside.
pub struct Tx<'a> {
    inner: Option<Transaction<'a>>,
}

impl<'a> Tx<'a> {
    pub fn new(tx: Transaction<'a>) -> Self {
        Self { inner: Some(tx) }
    }

    fn tx(&self) -> &Transaction<'a> {
        self.inner.as_ref().expect("the transaction is open")
    }

    /// Close every named statement this connection prepared, on the server connection the
    /// transaction holds: the cached type-lookup statements, and (`DEALLOCATE ALL`) any
    /// statement still alive in a row that outlives the transaction.
    pub async fn release_statements(&self) -> Result<(), Error> {
        self.tx().client().clear_type_cache();
        self.tx().batch_execute("DEALLOCATE ALL").await
    }

    /// Release the statements, then commit.
    pub async fn commit(mut self) -> Result<(), Error> {
        let tx = self.inner.take().expect("the transaction is open");
        tx.client().clear_type_cache();
        tx.batch_execute("DEALLOCATE ALL").await?;
        tx.commit().await
    }

    /// Commit a transaction whose statements [`Tx::release_statements`] released already: the
    /// only statement sent is `COMMIT`, so that an error here is the commit's own.
    pub async fn commit_released(mut self) -> Result<(), Error> {
        let tx = self.inner.take().expect("the transaction is open");
        tx.client().clear_type_cache();
        tx.commit().await
    }

    /// Release the statements (where the transaction can still run one), then roll back.
    pub async fn rollback(mut self) -> Result<(), Error> {
        let tx = self.inner.take().expect("the transaction is open");
        tx.client().clear_type_cache();
        // In a transaction that failed, only ROLLBACK runs; its statements are closed above.
        let _ = tx.batch_execute("DEALLOCATE ALL").await;
        tx.rollback().await
    }
}

impl<'a> Deref for Tx<'a> {
    type Target = Transaction<'a>;
    fn deref(&self) -> &Transaction<'a> {
        self.tx()
    }
}

impl Drop for Tx<'_> {
    /// Dropped open (an error or Ctrl-C): close the cached statements before the transaction's
    /// own drop sends ROLLBACK, so that they are closed on the server connection that has them.
    fn drop(&mut self) {
        if let Some(tx) = &self.inner {
            tx.client().clear_type_cache();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn statements_go_out_in_order_and_the_first_error_in_that_order_is_returned() {
        // Guards the load's error messages: a statement behind a failed one fails too, often
        // before the failed one's answer has been looked at; the cause must be what is reported.
        let sent = std::sync::Mutex::new(Vec::new());
        let statement = |n: u32, answered_after: u32, fails: bool| {
            let sent = &sent;
            async move {
                sent.lock().unwrap().push(n);
                for _ in 0..answered_after {
                    tokio::task::yield_now().await;
                }
                if fails {
                    Err(format!("statement {n} failed"))
                } else {
                    Ok(n)
                }
            }
        };
        let first_fails_last = pipelined([
            statement(1, 5, true),
            statement(2, 0, true),
            statement(3, 0, false),
        ])
        .await;
        assert_eq!(first_fails_last, Err("statement 1 failed".to_string()));
        assert_eq!(*sent.lock().unwrap(), vec![1, 2, 3]);
        assert_eq!(
            pipelined([statement(4, 2, false), statement(5, 0, false)]).await,
            Ok(vec![4, 5])
        );
        assert_eq!(
            pipelined2(statement(6, 3, true), statement(7, 0, true)).await,
            Err("statement 6 failed".to_string())
        );
        assert_eq!(*sent.lock().unwrap(), vec![1, 2, 3, 4, 5, 6, 7]);
    }
}
