//! The commands about readers: the suppression list and the subscribers.

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};

use super::Format;

#[derive(Debug, Subcommand)]
pub enum SuppressCommand {
    /// Suppress addresses
    Add {
        /// The addresses to suppress
        #[arg(required = true, value_name = "EMAIL")]
        emails: Vec<String>,
        /// Why, kept with the address
        #[arg(long, default_value = "added by hand")]
        reason: String,
    },
    /// Send to addresses again: lifts every suppression they have (a complaint, a bounce, the
    /// operator's, their own unsubscribe), recorded in their history with the reason
    Remove {
        /// The addresses to send to again
        #[arg(required = true, value_name = "EMAIL")]
        emails: Vec<String>,
        /// Why, kept in each reader's history
        #[arg(long, default_value = "removed by hand")]
        reason: String,
    },
    /// Print the suppression list: address, since, the deciding kind (unsubscribed,
    /// soft-limit, hard-bounce, suppressed, complaint) and reason
    List {
        /// Output: text for people, json for scripts
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Suppress the `email` column of a CSV file, e.g. the website's unsubscribe export; or,
    /// with --from mailchimp, Mailchimp's unsubscribed export (the readers' own unsubscribes)
    /// or cleaned export (hard bounces)
    Import {
        /// A CSV file with an `email` column (or a Mailchimp export)
        file: PathBuf,
        /// What wrote the file
        #[arg(long, value_enum, default_value_t = ImportFrom::Csv)]
        from: ImportFrom,
        /// Why, kept with each address
        #[arg(long, default_value = "unsubscribed on the website")]
        reason: String,
        /// What the rows are: the readers' own unsubscribes (lifted by the reader subscribing
        /// again), or the operator's suppressions (lifted only by `suppress remove`)
        #[arg(long = "as", value_enum, default_value_t = ImportAs::Unsubscribes)]
        as_: ImportAs,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFrom {
    /// A CSV with an `email` column (a recipient list, the website's export, listmonk's export)
    Csv,
    /// A Mailchimp audience export (`Email Address`, OPTIN_TIME ... TAGS)
    Mailchimp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportAs {
    Unsubscribes,
    Suppressions,
}

#[derive(Debug, Subcommand)]
pub enum SubscribersCommand {
    /// The reader's standing (mailed or not, and the event that decides it), their whole
    /// history, the messages sent to them and what came back
    Show {
        /// The reader's address, in any spelling of it
        email: String,
        /// Output: text for people, json for scripts (the same as `export`)
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Everything held about the person, as JSON: the rows of the recipient list, their
    /// history with its evidence, consents, deliveries, bounce and complaint records
    Export {
        /// The reader's address, in any spelling of it
        email: String,
        /// Output: json
        #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
        format: ExportFormat,
    },
    /// The confirmed subscribers (signed up and confirmed, or imported) who may be mailed:
    /// every send goes to them as well as to the recipient list
    List {
        /// Output: csv (email,name,projects,joined_at,how) or json
        #[arg(long, value_enum, default_value_t = ListFormat::Csv)]
        format: ListFormat,
    },
    /// Record the readers of a list brought from elsewhere as subscribers, with the consent
    /// wording that covered them there (stored with each, verbatim). Columns: email, and
    /// optionally name (or first_name, last_name) and projects; with --from mailchimp,
    /// Mailchimp's subscribed export (its consent columns kept, TAGS naming projects as projects)
    Import {
        /// The list (CSV)
        file: PathBuf,
        /// What wrote the file
        #[arg(long, value_enum, default_value_t = ImportFrom::Csv)]
        from: ImportFrom,
        /// The wording the readers agreed to where they signed up
        #[arg(long, value_name = "TEXT")]
        consent: String,
    },
    /// Erase the person's data from the ledger (deliveries, history, bounce records, the
    /// address wherever another record mentions it), keeping only a keyed hash so that the
    /// address is never mailed again; lists what still holds it outside the ledger
    Forget {
        /// The reader's address, in any spelling of it
        email: String,
        /// Do not ask for confirmation (needed when not on a terminal)
        #[arg(long, short)]
        yes: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Csv,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Json,
}
