//! Write transactions, and group commit on SQLite.
//!
//! SQLite has one writer and makes every commit durable with an fsync (`synchronous = FULL`),
//! so concurrent writers queue for the disk one commit at a time. [`Store::transact`] hands a
//! transaction's body to the *committer*, a task that owns the write connection: it takes every
//! body waiting, runs each in a savepoint of one transaction (a failed body is rolled back to
//! its savepoint and the others are unaffected), commits once, and only then answers each
//! caller. Durability is unchanged (nobody hears "done" before the commit is on disk); a group
//! of N writers costs one fsync instead of N. A group of one runs without savepoints.
//!
//! On PostgreSQL, which commits concurrent transactions in parallel (and merges their WAL
//! flushes itself), the body runs in an ordinary transaction on a pooled connection.

use std::panic::AssertUnwindSafe;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use sqlx::{AnyConnection, AnyPool, Executor};
use tokio::sync::{mpsc, oneshot};

use crate::{Result, Store, StoreError};

/// Called with the group's commit outcome; sends the body's result to its caller.
type Done = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
/// A transaction body, type-erased: runs on the connection, says whether its writes stand.
type Job = Box<dyn for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, (bool, Done)> + Send>;

/// The most bodies one commit takes.
const GROUP_MAX: usize = 64;

/// The committer's queue (SQLite only).
#[derive(Clone)]
pub(crate) struct Committer {
    jobs: mpsc::Sender<Job>,
}

impl Committer {
    /// Starts the committer on the (one-connection) write pool.
    pub(crate) fn start(write: AnyPool) -> Committer {
        let (jobs, rx) = mpsc::channel(1024);
        tokio::spawn(run(write, rx));
        Committer { jobs }
    }
}

fn stopped() -> StoreError {
    StoreError::Conflict(
        "the change was not written (the database writer failed or is shutting down); nothing changed, try again"
            .into(),
    )
}

impl Store {
    /// Runs `body` in a write transaction and commits it; an `Err` from the body writes
    /// nothing. On SQLite, grouped with concurrent writers into one commit (see the module).
    pub(crate) async fn transact<T, F>(&self, body: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        let Some(committer) = &self.committer else {
            let mut tx = self.write.begin().await?;
            let value = body(&mut tx).await?;
            tx.commit().await?;
            return Ok(value);
        };
        let (tx, rx) = oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |conn| {
            Box::pin(async move {
                let result = body(conn).await;
                let ok = result.is_ok();
                let done: Done = Box::new(move |commit| {
                    let _ = tx.send(match commit {
                        Ok(()) => result,
                        Err(m) => result.and(Err(StoreError::Db(sqlx::Error::Protocol(format!("commit failed: {m}"))))),
                    });
                });
                (ok, done)
            })
        });
        committer.jobs.send(job).await.map_err(|_| stopped())?;
        // A dropped sender means the body panicked or the group could not start.
        rx.await.map_err(|_| stopped())?
    }
}

async fn run(write: AnyPool, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < GROUP_MAX {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut conn = match write.acquire().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "database writer cannot get its connection");
                continue; // the jobs are dropped: their callers get an error
            }
        };
        if let Err(e) = group(&mut conn, jobs).await {
            tracing::error!(error = %e, "group commit failed");
        }
    }
}

/// Runs one group: BEGIN, each body (in a savepoint when there are several), COMMIT, then
/// every caller is answered with the commit's outcome.
async fn group(conn: &mut AnyConnection, jobs: Vec<Job>) -> std::result::Result<(), sqlx::Error> {
    let single = jobs.len() == 1;
    (&mut *conn).execute("BEGIN IMMEDIATE").await?;
    let mut dones: Vec<Done> = Vec::with_capacity(jobs.len());
    let mut keep_any = false;
    for job in jobs {
        if !single {
            if let Err(e) = (&mut *conn).execute("SAVEPOINT pcl_body").await {
                return abort(conn, dones, e).await;
            }
        }
        // A panicking body loses its answer (its caller gets an error) and its writes.
        let (ok, done) = match AssertUnwindSafe(job(&mut *conn)).catch_unwind().await {
            Ok((ok, done)) => (ok, Some(done)),
            Err(_) => {
                tracing::error!("a write transaction body panicked; its writes are rolled back");
                (false, None)
            }
        };
        keep_any |= ok;
        if !single {
            let sql = if ok { "RELEASE pcl_body" } else { "ROLLBACK TO pcl_body; RELEASE pcl_body" };
            if let Err(e) = (&mut *conn).execute(sql).await {
                dones.extend(done);
                return abort(conn, dones, e).await;
            }
        }
        dones.extend(done);
    }
    let outcome = if keep_any {
        (&mut *conn).execute("COMMIT").await.map(|_| ())
    } else {
        (&mut *conn).execute("ROLLBACK").await.map(|_| ())
    };
    if let Err(e) = &outcome {
        let _ = (&mut *conn).execute("ROLLBACK").await;
        tracing::error!(error = %e, "commit failed");
    }
    let message = outcome.as_ref().err().map(ToString::to_string);
    for done in dones {
        done(message.clone().map_or(Ok(()), Err));
    }
    outcome
}

/// A control statement failed: nothing of the group is kept, every caller hears why.
async fn abort(conn: &mut AnyConnection, dones: Vec<Done>, e: sqlx::Error) -> std::result::Result<(), sqlx::Error> {
    let _ = (&mut *conn).execute("ROLLBACK").await;
    for done in dones {
        done(Err(e.to_string()));
    }
    Err(e)
}
