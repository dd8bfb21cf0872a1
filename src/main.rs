//! Thin entry point: parse the command line, set up logging, run one command, map its result
//! to a documented exit code.

mod cli;
mod commands;

use std::process::ExitCode;

use crate::cli::Command;

/// What a command that ran to the end found.
pub enum Exit {
    Success,
    /// Ran, but something needs the user's attention (exit code 1).
    Problems,
    /// Stopped by Ctrl-C or SIGTERM after recording what was in flight (exit code 130).
    Interrupted,
}

fn main() -> ExitCode {
    let cli = cli::parse();
    init_tracing(cli.quiet);
    end_quietly_when_the_reader_goes(&cli.command);
    let result = match cli.command {
        Command::Init(args) => commands::init::run(cli.quiet, args),
        Command::Doctor(args) => commands::doctor::run(cli.config.as_deref(), args),
        Command::Preview(args) => commands::preview::run(cli.config.as_deref(), cli.quiet, args),
        Command::Check(args) => commands::check::run(cli.config.as_deref(), cli.quiet, args),
        Command::New(args) => commands::new::run(cli.config.as_deref(), cli.quiet, args),
        Command::Send(args) => commands::send::run(cli.config.as_deref(), cli.quiet, args),
        Command::Status(args) => commands::status::run(cli.config.as_deref(), args),
        Command::Report(args) => commands::report::run(cli.config.as_deref(), args),
        Command::Serve { listen } => commands::serve::run(cli.config.as_deref(), cli.quiet, listen),
        Command::Archive { out, action } => commands::serve::archive(cli.config.as_deref(), cli.quiet, out, action),
        Command::Layout(command) => commands::layout::run(cli.config.as_deref(), cli.quiet, command),
        Command::Bounces(args) => commands::bounces::run(cli.config.as_deref(), cli.quiet, args),
        Command::Dmarc(args) => commands::dmarc::run(cli.config.as_deref(), cli.quiet, args),
        Command::Prune { dry_run, format } => commands::prune::run(cli.config.as_deref(), cli.quiet, dry_run, format),
        Command::Backup { file, format } => commands::backup::backup(cli.config.as_deref(), cli.quiet, &file, format),
        Command::Restore { file, force } => commands::backup::restore(cli.config.as_deref(), cli.quiet, &file, force),
        Command::Suppress(command) => commands::suppress::run(cli.config.as_deref(), cli.quiet, command),
        Command::Subscribers(command) => commands::subscribers::run(cli.config.as_deref(), cli.quiet, command),
        Command::Dkim { format } => commands::dkim::run(cli.config.as_deref(), format),
        Command::Completions { shell } => commands::docs::completions(shell),
        Command::Man { dir } => commands::docs::man(&dir, cli.quiet),
        Command::UnsubscribeUrl(args) => {
            commands::reader_url(cli.config.as_deref(), commands::ReaderLink::Unsubscribe, args)
        }
        Command::PreferencesUrl(args) => {
            commands::reader_url(cli.config.as_deref(), commands::ReaderLink::Preferences, args)
        }
    };
    match result {
        Ok(Exit::Success) => ExitCode::SUCCESS,
        Ok(Exit::Problems) => ExitCode::from(1),
        Ok(Exit::Interrupted) => ExitCode::from(130),
        Err(err) if err.downcast_ref::<newsletter::ledger::Locked>().is_some() => {
            eprintln!("{err}");
            ExitCode::from(3)
        }
        Err(err) => {
            // The cause chain on one line, like ripgrep: never a debug dump.
            let chain: Vec<String> = err.chain().map(ToString::to_string).collect();
            eprintln!("error: {}", chain.join(": "));
            ExitCode::from(2)
        }
    }
}

/// A command whose output goes into a pipe the reader closed (`newsletter status | head`) ends
/// at once and quietly, as Unix tools do, instead of a panic on the next line it prints. Not
/// the long runs that record as they go (send, serve, bounces): they finish their work.
fn end_quietly_when_the_reader_goes(command: &Command) {
    if matches!(command, Command::Send(_) | Command::Serve { .. } | Command::Bounces(_)) {
        return;
    }
    // SAFETY: restoring a signal's default disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn init_tracing(quiet: bool) {
    let default = if quiet { "error" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("NEWSLETTER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || newsletter::logging::Escaping::new(std::io::stderr(), ansi))
        .with_target(false)
        .without_time()
        .with_ansi(ansi)
        .init();
}
