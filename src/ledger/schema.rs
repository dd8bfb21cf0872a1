//! The one schema of the project's SQLite file (`state/newsletter.db`), as numbered
//! migrations. `PRAGMA user_version` says how many have run; each runs once, in a
//! transaction, so a file made by any earlier release upgrades in place.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rusqlite::Connection;

/// Migration N (1-based) brings the file from version N-1 to N. Append only: a published
/// migration is never edited.
const MIGRATIONS: &[&str] = &[
    // 1: the first release's tables. `IF NOT EXISTS`: files made before versions were
    // counted already have them.
    "
    CREATE TABLE IF NOT EXISTS deliveries (
        issue TEXT NOT NULL,
        email TEXT NOT NULL,          -- lower case
        line INTEGER NOT NULL,        -- CSV line at the last attempt
        status TEXT NOT NULL CHECK (status IN ('sending', 'sent', 'deferred', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        last_reply TEXT,
        message_id TEXT NOT NULL,
        possibly_duplicated INTEGER NOT NULL DEFAULT 0,
        first_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        sent_at TEXT,
        PRIMARY KEY (issue, email)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS suppressions (
        email TEXT PRIMARY KEY,       -- lower case
        reason TEXT NOT NULL,
        source TEXT NOT NULL,
        created_at TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS issues (
        issue TEXT PRIMARY KEY,
        subject TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('sending', 'complete')),
        started_at TEXT NOT NULL,
        completed_at TEXT
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS runs (
        id INTEGER PRIMARY KEY,
        issue TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        sent INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        seconds REAL NOT NULL DEFAULT 0,
        ended TEXT                    -- complete, interrupted, stopped: <why>, or NULL while running
    );
    CREATE TABLE IF NOT EXISTS link_checks (
        url TEXT NOT NULL,
        image INTEGER NOT NULL,       -- checked as an image: the content type matters
        checked_at INTEGER NOT NULL,  -- Unix seconds
        outcome TEXT NOT NULL,        -- JSON
        PRIMARY KEY (url, image)
    ) WITHOUT ROWID;
    ",
    // 2: what the first run of an issue sent (a hash of subject, HTML and text), to notice a
    // file changed under a send; and which recipients a run chose (--where, --limit).
    "
    ALTER TABLE issues ADD COLUMN content_hash TEXT;
    ALTER TABLE runs ADD COLUMN selection TEXT;
    ",
    // 3: the issue whose link a reader unsubscribed with.
    "
    ALTER TABLE suppressions ADD COLUMN issue TEXT;
    ",
    // 4: the return path. Each report read from the bounce mailbox, once; what it said about
    // each recipient; how far each mailbox was read; and the event behind a suppression.
    "
    CREATE TABLE reports (
        report TEXT PRIMARY KEY,      -- its Message-ID, or sha256:HEX of its bytes
        handled_at TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE bounce_events (
        id INTEGER PRIMARY KEY,
        report TEXT NOT NULL,
        email TEXT,                   -- lower case; NULL when it names no recipient of ours
        issue TEXT,
        class TEXT NOT NULL CHECK (class IN ('hard', 'soft', 'complaint', 'ignore')),
        reason TEXT NOT NULL,
        status TEXT,
        diagnostic TEXT NOT NULL,
        action TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX bounce_events_issue ON bounce_events (issue, class);
    CREATE INDEX bounce_events_email ON bounce_events (email);
    CREATE TABLE mailbox_cursors (
        source TEXT PRIMARY KEY,
        position TEXT NOT NULL        -- mbox: byte offset; IMAP: UIDVALIDITY:UID
    ) WITHOUT ROWID;
    CREATE INDEX deliveries_message_id ON deliveries (message_id);
    ALTER TABLE suppressions ADD COLUMN cause INTEGER;
    ",
    // 5: a reader's standing as a history. Every change is an event; `suppressions` becomes
    // the standing derived from the events (the deciding event's kind and id), kept so that a
    // send looks an address up in one read. Erased addresses leave only a keyed hash. The
    // rows of the old list become the first events, by what made them.
    "
    CREATE TABLE reader_events (
        id INTEGER PRIMARY KEY,
        email TEXT NOT NULL,          -- lower case
        kind TEXT NOT NULL CHECK (kind IN ('subscribed', 'confirmed', 'unsubscribed', 'resubscribed',
            'suppressed', 'removed', 'hard-bounce', 'soft-limit', 'complaint')),
        source TEXT NOT NULL,         -- one-click, mailto, operator, import: FILE, bounces, send, ...
        issue TEXT,
        evidence TEXT NOT NULL,       -- JSON object: remote address, Message-ID, report, note, ...
        answers INTEGER,              -- a resubscribe: the unsubscribe it answers
        created_at TEXT NOT NULL
    );
    CREATE INDEX reader_events_email ON reader_events (email, id);
    CREATE TABLE forgotten (
        hash TEXT PRIMARY KEY,        -- HMAC-SHA256 of the address under the key file's key
        created_at TEXT NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO reader_events (email, kind, source, issue, evidence, created_at)
    SELECT email,
           CASE WHEN source IN ('one-click', 'mailto') THEN 'unsubscribed'
                WHEN source = 'complaint' THEN 'complaint'
                WHEN source = 'soft-limit' THEN 'soft-limit'
                WHEN source = 'bounce' OR source LIKE 'bounce: %' THEN 'hard-bounce'
                ELSE 'suppressed' END,
           source, issue,
           json_object('note', reason, 'bounce_event', cause, 'migrated', 'from the suppression list of an earlier release'),
           created_at
    FROM suppressions ORDER BY created_at, email;
    ALTER TABLE suppressions ADD COLUMN kind TEXT;
    ALTER TABLE suppressions ADD COLUMN event INTEGER;
    UPDATE suppressions SET
        event = (SELECT id FROM reader_events e WHERE e.email = suppressions.email),
        kind = (SELECT kind FROM reader_events e WHERE e.email = suppressions.email);
    ",
    // 6: the guard against mass suppression. A hard bounce waits here for the end of its run;
    // a group of them at one domain with one diagnostic, past bounces.mass_guard, is held for
    // the operator.
    "
    CREATE TABLE held_groups (
        id INTEGER PRIMARY KEY,
        domain TEXT NOT NULL,
        signature TEXT NOT NULL,      -- the diagnostic, addresses and identifiers taken out
        diagnostic TEXT NOT NULL,     -- one reader's, as written
        state TEXT NOT NULL CHECK (state IN ('held', 'accepted', 'rejected')),
        created_at TEXT NOT NULL,
        decided_at TEXT
    );
    CREATE TABLE deferred_suppressions (
        id INTEGER PRIMARY KEY,
        email TEXT NOT NULL,          -- lower case
        issue TEXT,
        kind TEXT NOT NULL,           -- the reader event it becomes: hard-bounce, soft-limit
        source TEXT NOT NULL,
        domain TEXT NOT NULL,
        signature TEXT NOT NULL,
        diagnostic TEXT NOT NULL,
        evidence TEXT NOT NULL,       -- JSON, for the reader's history
        state TEXT NOT NULL CHECK (state IN ('pending', 'held', 'applied', 'accepted', 'rejected')),
        grp INTEGER REFERENCES held_groups (id),
        created_at TEXT NOT NULL
    );
    CREATE INDEX deferred_by_state ON deferred_suppressions (state, domain, signature);
    CREATE INDEX deferred_by_group ON deferred_suppressions (grp);
    ",
    // 7: sign-up with double opt-in and readers' choices. A sign-up waits in `signups` until
    // its link is confirmed (the request is not the reader's act: anyone may type an
    // address); the confirmation is a reader event carrying the consent record. `subscribers`
    // and `choices` are derived from the events, like `suppressions`. The history gains the
    // kind `chose-projects` (SQLite changes a CHECK only by copying the table).
    "
    CREATE TABLE reader_events_7 (
        id INTEGER PRIMARY KEY,
        email TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('subscribed', 'confirmed', 'unsubscribed', 'resubscribed',
            'suppressed', 'removed', 'hard-bounce', 'soft-limit', 'complaint', 'chose-projects')),
        source TEXT NOT NULL,
        issue TEXT,
        evidence TEXT NOT NULL,
        answers INTEGER,
        created_at TEXT NOT NULL
    );
    INSERT INTO reader_events_7 (id, email, kind, source, issue, evidence, answers, created_at)
    SELECT id, email, kind, source, issue, evidence, answers, created_at FROM reader_events;
    DROP TABLE reader_events;
    ALTER TABLE reader_events_7 RENAME TO reader_events;
    CREATE INDEX reader_events_email ON reader_events (email, id);
    CREATE TABLE signups (
        id INTEGER PRIMARY KEY,
        email TEXT NOT NULL,          -- lower case
        name TEXT,
        projects TEXT NOT NULL,       -- as the list column: ids joined by ';', '' for everything
        form TEXT NOT NULL,
        wording TEXT NOT NULL,        -- the consent wording the form showed, verbatim
        layout_version TEXT NOT NULL,
        client TEXT NOT NULL,         -- JSON: remote, forwarded_for
        posted_at TEXT NOT NULL,
        emailed_at TEXT,              -- the confirmation email was sent (or is being sent)
        message_id TEXT,
        confirmed_at TEXT
    );
    CREATE INDEX signups_by_email ON signups (email, posted_at);
    CREATE INDEX deferred_by_issue ON deferred_suppressions (issue, kind);
    CREATE TABLE subscribers (
        email TEXT PRIMARY KEY,       -- lower case
        name TEXT,
        event INTEGER NOT NULL,       -- the reader event that made them one (confirmed, subscribed)
        joined_at TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE choices (
        email TEXT PRIMARY KEY,       -- lower case
        projects TEXT NOT NULL,       -- '' for everything
        event INTEGER NOT NULL,
        chosen_at TEXT NOT NULL
    ) WITHOUT ROWID;
    ",
    // 8: relay pools: which relay took each message, and how many each took per day (for
    // its daily limit).
    "
    ALTER TABLE deliveries ADD COLUMN relay TEXT;
    CREATE TABLE relay_days (
        relay TEXT NOT NULL,
        day TEXT NOT NULL,            -- YYYY-MM-DD, UTC
        messages INTEGER NOT NULL,
        PRIMARY KEY (relay, day)
    ) WITHOUT ROWID;
    ",
    // 9: the archive keeps each issue's page as it was sent.
    "
    CREATE TABLE archive (
        issue TEXT PRIMARY KEY,
        subject TEXT NOT NULL,        -- with the archive's neutral fields
        preheader TEXT,
        send_at TEXT,                 -- UTC, as now() writes times: public from then on
        published_at TEXT NOT NULL,
        page TEXT NOT NULL
    ) WITHOUT ROWID;
    ",
    // 10: one key per mailbox. Earlier releases stored `"victim"@example.org` apart from
    // victim@example.org; every row moves to the canonical key (`canonical_address`, the
    // project's one definition, registered on the connection). Histories simply merge, and
    // the standing derived from them by precedence; for the derived tables the strongest
    // standing wins (a complaint over an unsubscribe), the first subscription and the latest
    // choice; of two deliveries of one issue, the canonical spelling's row stays.
    "
    UPDATE reader_events SET email = canonical_address(email) WHERE email <> canonical_address(email);
    UPDATE bounce_events SET email = canonical_address(email)
        WHERE email IS NOT NULL AND email <> canonical_address(email);
    UPDATE deferred_suppressions SET email = canonical_address(email) WHERE email <> canonical_address(email);
    UPDATE signups SET email = canonical_address(email) WHERE email <> canonical_address(email);
    UPDATE OR IGNORE deliveries SET email = canonical_address(email) WHERE email <> canonical_address(email);
    DELETE FROM deliveries WHERE email <> canonical_address(email);
    CREATE TEMP TABLE strength (kind TEXT PRIMARY KEY, n INTEGER NOT NULL);
    INSERT INTO strength VALUES ('unsubscribed', 1), ('soft-limit', 2), ('hard-bounce', 3),
        ('suppressed', 4), ('complaint', 5);
    INSERT OR REPLACE INTO suppressions (email, reason, source, created_at, cause, kind, event)
    SELECT canonical_address(s.email), s.reason, s.source, s.created_at, s.cause, s.kind, s.event
    FROM suppressions s LEFT JOIN strength k ON k.kind = s.kind
    WHERE s.email <> canonical_address(s.email)
      AND COALESCE(k.n, 0) >= COALESCE((SELECT k2.n FROM suppressions c LEFT JOIN strength k2 ON k2.kind = c.kind
                                        WHERE c.email = canonical_address(s.email)), -1)
    ORDER BY COALESCE(k.n, 0);
    DELETE FROM suppressions WHERE email <> canonical_address(email);
    DROP TABLE strength;
    INSERT OR IGNORE INTO subscribers (email, name, event, joined_at)
    SELECT canonical_address(email), name, event, joined_at FROM subscribers
    WHERE email <> canonical_address(email) ORDER BY joined_at;
    UPDATE subscribers SET
        event = (SELECT o.event FROM subscribers o WHERE canonical_address(o.email) = subscribers.email
                 ORDER BY o.joined_at LIMIT 1),
        joined_at = (SELECT MIN(o.joined_at) FROM subscribers o WHERE canonical_address(o.email) = subscribers.email)
    WHERE email IN (SELECT canonical_address(email) FROM subscribers WHERE email <> canonical_address(email));
    DELETE FROM subscribers WHERE email <> canonical_address(email);
    INSERT OR REPLACE INTO choices (email, projects, event, chosen_at)
    SELECT canonical_address(o.email), o.projects, o.event, o.chosen_at FROM choices o
    WHERE o.email <> canonical_address(o.email)
      AND o.chosen_at >= COALESCE((SELECT c.chosen_at FROM choices c WHERE c.email = canonical_address(o.email)), '')
    ORDER BY o.chosen_at;
    DELETE FROM choices WHERE email <> canonical_address(email);
    ",
    // 11: a confirmation email that could not go is tried again, not dropped: each attempt
    // counted on its sign-up, the last error kept, and when the next one is due.
    "
    ALTER TABLE signups ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE signups ADD COLUMN last_error TEXT;
    ALTER TABLE signups ADD COLUMN retry_at TEXT;  -- UTC; NULL: nothing waits
    CREATE INDEX signups_retry ON signups (retry_at) WHERE retry_at IS NOT NULL;
    ",
    // 12: sign-ups refused because the address may not be asked (complaint, operator,
    // forgotten), counted per day without the address: the count is written, and synced, as
    // an accepted sign-up's row is, so that the answer's time does not tell them apart.
    "
    CREATE TABLE signup_refusals (
        day TEXT PRIMARY KEY,         -- YYYY-MM-DD, UTC
        refused INTEGER NOT NULL
    ) WITHOUT ROWID;
    ",
    // 13: what readers did with an issue, as counts only. Its links as first sent (the
    // redirect's targets, never taken from a request), and per issue, what was fetched (a
    // link, the archive page, the image), UTC day and reason, a number: no address, token,
    // IP, agent or time of a request.
    "
    CREATE TABLE issue_links (
        issue TEXT NOT NULL,
        n INTEGER NOT NULL,
        url TEXT NOT NULL,
        section TEXT NOT NULL,
        project TEXT,
        PRIMARY KEY (issue, n)
    ) WITHOUT ROWID;
    CREATE TABLE reading_counts (
        issue TEXT NOT NULL,
        kind TEXT NOT NULL,           -- link, page or open
        n INTEGER NOT NULL,           -- the link's number; 0 for the page and the image
        day TEXT NOT NULL,            -- YYYY-MM-DD, UTC
        reason TEXT NOT NULL,         -- counted, method, agent, too_soon, burst
        count INTEGER NOT NULL,
        PRIMARY KEY (issue, kind, n, day, reason)
    ) WITHOUT ROWID;
    ",
    // 14: which unsubscribe secret signs this ledger's links, as a fingerprint (a key derived
    // from it, not the secret): send and serve refuse another one unless it is a rotation.
    "
    CREATE TABLE secret_in_use (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        fingerprint TEXT NOT NULL,
        since TEXT NOT NULL           -- UTC, when it was first used or rotated to
    );
    ",
    // 15: an issue's publication is a fact of the issue, not of its deliveries: forgetting its
    // only reader (or pruning old deliveries) must not take its archive page down.
    "
    ALTER TABLE archive ADD COLUMN went_out_at TEXT;  -- when a message of it had gone out
    UPDATE archive SET went_out_at = published_at
     WHERE EXISTS (SELECT 1 FROM deliveries d WHERE d.issue = archive.issue AND d.status = 'sent');
    ",
    // 16: DMARC aggregate reports, one per reporting organisation and report id, with their
    // rows as reported (sending servers' addresses, not readers'), and the ones that could not
    // be read with why.
    "
    CREATE TABLE dmarc_reports (
        id INTEGER PRIMARY KEY,
        org TEXT NOT NULL,
        report_id TEXT NOT NULL,
        domain TEXT NOT NULL,
        policy TEXT NOT NULL,         -- the published p=
        begin_at INTEGER NOT NULL,    -- Unix seconds, as reported
        end_at INTEGER NOT NULL,
        source TEXT NOT NULL,         -- the file, or the mailbox and message it came from
        read_at TEXT NOT NULL,
        UNIQUE (org, report_id)
    );
    CREATE INDEX dmarc_reports_end ON dmarc_reports (end_at);
    CREATE TABLE dmarc_rows (
        report INTEGER NOT NULL REFERENCES dmarc_reports (id),
        source_ip TEXT NOT NULL,
        messages INTEGER NOT NULL,
        disposition TEXT NOT NULL,    -- none, quarantine or reject
        dkim TEXT NOT NULL,           -- policy-evaluated: pass or fail
        spf TEXT NOT NULL,
        header_from TEXT NOT NULL,
        dkim_domain TEXT NOT NULL,    -- the DKIM result that decides, as reported
        dkim_selector TEXT NOT NULL,
        dkim_result TEXT NOT NULL,
        spf_domain TEXT NOT NULL,
        spf_result TEXT NOT NULL
    );
    CREATE INDEX dmarc_rows_report ON dmarc_rows (report);
    CREATE TABLE dmarc_unreadable (
        source TEXT NOT NULL,
        why TEXT NOT NULL,
        read_at TEXT NOT NULL,
        UNIQUE (source, why)
    );
    ",
    // 17: retention. An old issue's figures once its per-reader records are pruned (its
    // messages by relay and status, its bounce counts); when maintenance last ran.
    "
    CREATE TABLE pruned_issues (
        issue TEXT PRIMARY KEY,
        pruned_at TEXT NOT NULL,
        first_at TEXT,                -- its first message
        hard INTEGER NOT NULL,        -- readers with a bounce or complaint, as status counts them
        soft INTEGER NOT NULL,
        complaints INTEGER NOT NULL,
        blocked INTEGER NOT NULL,
        delayed INTEGER NOT NULL,
        returned_hard INTEGER NOT NULL,       -- as the reputation guard counts them
        returned_complaints INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE pruned_deliveries (
        issue TEXT NOT NULL,
        relay TEXT NOT NULL,          -- '' for messages from before relay pools
        status TEXT NOT NULL,
        messages INTEGER NOT NULL,
        duplicated INTEGER NOT NULL,  -- possibly duplicated
        PRIMARY KEY (issue, relay, status)
    ) WITHOUT ROWID;
    CREATE TABLE maintenance (
        task TEXT PRIMARY KEY,
        last_at TEXT NOT NULL
    ) WITHOUT ROWID;
    -- What the key file beside the ledger must give (an HMAC of a fixed text under it), so
    -- that a restore can tell a backup's key from another.
    CREATE TABLE key_check (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        mac TEXT NOT NULL
    );
    ",
    // 18: the recipient list a run read, so that `status` counts what is pending against the
    // list the issue was being sent to (`send --recipients`), not today's configured one.
    "
    ALTER TABLE runs ADD COLUMN list TEXT;
    ",
];

/// Opens (creating it if need be) the file at `path`, upgraded to the current schema.
pub fn connect(path: &Path) -> Result<Connection> {
    let context = || format!("cannot open the ledger {}", path.display());
    let mut conn = Connection::open(path).with_context(context)?;
    register_canonical(&conn).with_context(context)?;
    // A new file gives freed pages back a step at a time (retention's prune): set before
    // anything is written to it, WAL mode included; on a file that has tables this only takes
    // effect at its next VACUUM.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .with_context(context)?;
    // WAL: readers (status, the producer) never block the writer. FULL: a commit is on disk
    // before it returns (a send relaxes this for its own records: Ledger::relax_durability).
    conn.pragma_update(None, "journal_mode", "WAL").with_context(context)?;
    conn.pragma_update(None, "synchronous", "FULL").with_context(context)?;
    conn.busy_timeout(Duration::from_secs(10)).with_context(context)?;
    // After a checkpoint resets the write-ahead log, it is cut back to 64 MB: a prune or a
    // large send must not leave a log of gigabytes beside the file.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
        .with_context(context)?;
    migrate(&mut conn).with_context(|| format!("cannot upgrade the ledger {}", path.display()))?;
    Ok(conn)
}

/// `canonical_address(TEXT)`: [`crate::address::key`] for SQL, so that a migration keys rows
/// exactly as the code does.
fn register_canonical(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        "canonical_address",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| Ok(crate::address::key(&ctx.get::<String>(0)?)),
    )
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let version = user_version(conn)?;
    if version > MIGRATIONS.len() {
        bail!(
            "it was written by a newer newsletter (schema {version}, this one knows {}): upgrade newsletter",
            MIGRATIONS.len()
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        // IMMEDIATE: two processes opening an old file at once upgrade it one after the other.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if user_version(&tx)? > i {
            continue;
        }
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

fn user_version(conn: &Connection) -> Result<usize> {
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    Ok(usize::try_from(v).unwrap_or(0))
}

/// The schema version of the file at `path`, read without changing it.
pub fn version_of(path: &Path) -> Result<usize> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open the ledger {}", path.display()))?;
    user_version(&conn)
}

/// How many migrations this release knows.
pub fn current_version() -> usize {
    MIGRATIONS.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_from_a_newer_release_is_refused_and_migrations_run_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.db");
        drop(connect(&path).unwrap());
        // A second open finds nothing to do (ALTER TABLE would fail if run twice).
        let conn = connect(&path).unwrap();
        assert_eq!(user_version(&conn).unwrap(), current_version());
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = format!("{:#}", connect(&path).unwrap_err());
        assert!(err.contains("written by a newer newsletter (schema 99"), "{err}");
    }

    #[test]
    fn spellings_of_one_mailbox_merge_into_its_key_the_strongest_standing_winning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.db");
        {
            let conn = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..9] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 9).unwrap();
            conn.execute_batch(
                r#"
                INSERT INTO reader_events (email, kind, source, evidence, created_at) VALUES
                    ('victim@example.org', 'complaint', 'bounces', '{}', '2025-01-01'),
                    ('"victim"@example.org', 'unsubscribed', 'one-click', '{}', '2025-02-01'),
                    ('"zoe"@example.org', 'subscribed', 'import', '{}', '2025-02-01');
                INSERT INTO suppressions (email, reason, source, created_at, kind, event) VALUES
                    ('victim@example.org', 'complaint', 'bounces', '2025-01-01', 'complaint', 1),
                    ('"victim"@example.org', 'unsubscribed', 'one-click', '2025-02-01', 'unsubscribed', 2),
                    ('"ann"@example.org', 'unsubscribed', 'one-click', '2025-02-01', 'unsubscribed', 7),
                    ('ann@example.org', 'hard bounce', 'bounces', '2025-01-01', 'hard-bounce', 8);
                INSERT INTO subscribers (email, name, event, joined_at) VALUES
                    ('"zoe"@example.org', 'Zoe', 3, '2025-02-01'),
                    ('zoe@example.org', NULL, 4, '2025-03-01');
                INSERT INTO choices (email, projects, event, chosen_at) VALUES
                    ('"zoe"@example.org', 'zuul', 5, '2025-04-01'),
                    ('zoe@example.org', 'openstack', 6, '2025-03-01');
                INSERT INTO deliveries (issue, email, line, status, message_id, first_at, updated_at) VALUES
                    ('2025-07', '"zoe"@example.org', 2, 'sent', '<a>', 'x', 'x'),
                    ('2025-07', 'zoe@example.org', 3, 'sent', '<b>', 'x', 'x'),
                    ('2025-01', '"zoe"@example.org', 2, 'sent', '<c>', 'x', 'x');
                "#,
            )
            .unwrap();
        }
        let conn = connect(&path).unwrap();
        let rows = |sql: &str| -> Vec<String> {
            let mut stmt = conn.prepare(sql).unwrap();
            stmt.query_map([], |r| r.get::<_, String>(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(
            rows("SELECT email || ' ' || kind FROM suppressions ORDER BY email"),
            ["ann@example.org hard-bounce", "victim@example.org complaint"]
        );
        assert_eq!(
            rows("SELECT DISTINCT email FROM reader_events ORDER BY email"),
            ["victim@example.org", "zoe@example.org"]
        );
        assert_eq!(
            rows("SELECT email || ' ' || joined_at || ' ' || event FROM subscribers"),
            ["zoe@example.org 2025-02-01 3"]
        );
        assert_eq!(
            rows("SELECT email || ' ' || projects FROM choices"),
            ["zoe@example.org zuul"]
        );
        assert_eq!(
            rows("SELECT issue || ' ' || email || ' ' || message_id FROM deliveries ORDER BY issue"),
            ["2025-01 zoe@example.org <c>", "2025-07 zoe@example.org <b>"]
        );
    }
}
