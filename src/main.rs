//! The `proxfleet` binary: parse arguments, set up logging, run the command, map its error to
//! an exit code. Everything else lives in the library.

use std::io::{self, IsTerminal};
use std::process::ExitCode;

use clap::FromArgMatches;
use proxfleet::cli::{Cli, Command, SimCommand};
use proxfleet::commands::progress::ProgressMode;
use proxfleet::commands::{self, CommandError, Connection, Interrupt, Io, Success};

/// mimalloc: a spec of 100,000 clones makes and frees millions of small values, where glibc's
/// allocator spends about half the time (see ARCHITECTURE.md, and `cargo bench --bench validate`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour in log lines only on a terminal, and never with NO_COLOR (anstream's rules).
    let ansi = anstream::AutoStream::choice(&io::stderr()) != anstream::ColorChoice::Never;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(io::stderr)
        .with_target(false)
        .init();
}

async fn run(cli: &Cli, io: &mut Io<'_>) -> Result<Success, CommandError> {
    match &cli.command {
        Command::Validate(args) => commands::validate::run(args, io).map(|()| Success::Done),
        Command::Schema(args) => commands::schema::run(args, io).map(|()| Success::Done),
        Command::Completions(args) => commands::docs::completions(args, io).map(|()| Success::Done),
        Command::Man(args) => commands::docs::man(args, io).map(|()| Success::Done),
        Command::Sim(SimCommand::Serve(args)) => {
            commands::sim::serve(args, io).await.map(|()| Success::Done)
        }
        Command::Plan(_)
        | Command::Apply(_)
        | Command::Destroy(_)
        | Command::Check(_)
        | Command::Show(_)
        | Command::Inventory(_)
        | Command::Unlock(_) => {
            let conn = commands::connect(&cli.global).await?;
            let result = with_connection(cli, &conn, io).await;
            if cli.global.verbose > 0 {
                commands::report_requests(&conn.client, io);
            }
            conn.close().await;
            result
        }
    }
}

async fn with_connection(
    cli: &Cli,
    conn: &Connection,
    io: &mut Io<'_>,
) -> Result<Success, CommandError> {
    match &cli.command {
        Command::Plan(args) => {
            commands::check::gate(&args.spec.file, args.skip_checks, conn, io).await?;
            commands::plan::run(args, conn, io).await
        }
        Command::Apply(args) => {
            commands::check::gate_apply(args, conn, io).await?;
            commands::apply::run_apply(args, conn, io)
                .await
                .map(|()| Success::Done)
        }
        Command::Check(args) => commands::check::run(args, conn, io)
            .await
            .map(|()| Success::Done),
        Command::Destroy(args) => commands::apply::run_destroy(args, conn, io)
            .await
            .map(|()| Success::Done),
        Command::Show(args) => commands::show::run_show(args, conn, io)
            .await
            .map(|()| Success::Done),
        Command::Inventory(args) => commands::show::run_inventory(args, conn, io)
            .await
            .map(|()| Success::Done),
        Command::Unlock(args) => commands::unlock::run(args, conn, io)
            .await
            .map(|()| Success::Done),
        _ => Ok(Success::Done),
    }
}

fn main() -> ExitCode {
    // Usage errors exit 1, not clap's 2: `plan --detailed-exitcode` gives 2 its own meaning.
    let parsed = proxfleet::cli::command()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.exit_code() == 0 { 0 } else { 1 });
        }
    };
    init_tracing(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    // Colour only for a terminal, and never with NO_COLOR (anstream's rules, as clap's).
    let color = anstream::AutoStream::choice(&io::stdout()) != anstream::ColorChoice::Never;
    // Not locked for the whole run: apply's progress lines come from other threads.
    let mut out = io::stdout();
    let mut err = io::stderr();
    let stdin = io::stdin();
    let mut input = stdin.lock();
    // Spinners only for a terminal, and not under -v, whose log lines would tear them.
    let progress = if io::stderr().is_terminal() && cli.global.verbose == 0 {
        ProgressMode::Spinners
    } else {
        ProgressMode::Lines
    };
    let mut io = Io {
        out: &mut out,
        color,
        err: &mut err,
        input: &mut input,
        progress,
        verbose: cli.global.verbose,
        interrupt: Interrupt::ctrl_c(),
    };
    let result = runtime.block_on(run(&cli, &mut io));
    let _ = io.out.flush();
    let code = u8::try_from(commands::exit_code(&result)).unwrap_or(1);
    match result {
        Ok(_) => ExitCode::from(code),
        Err(error) => {
            let text = error.to_string();
            if text.starts_with("error") {
                let _ = writeln!(io.err, "{}", text.trim_end());
            } else {
                let _ = writeln!(io.err, "error: {}", text.trim_end());
            }
            ExitCode::from(code)
        }
    }
}
