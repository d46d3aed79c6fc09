//! `pgmoneta-admin`: the master key and the users and admins vaults (see
//! `pgmoneta_cli::admin` and docs/admin.md).

use std::path::PathBuf;

use clap::{ArgAction, Parser, Subcommand};
use pgmoneta_cli::admin::{self, Command, Format, Options, StdinInput, ALLOW_ROOT_ENV, PASSWORD_ENV};

const ENVIRONMENT: &str = "Environment:
  PGMONETA_PASSWORD    the password or master key, when neither -P nor -g is given
  PGMONETA_ALLOW_ROOT  set to 1 to allow running as root (containers, tests)";

/// Administration utility for pgmoneta: creates the master key and manages the users and
/// admins vaults.
#[derive(Debug, Parser)]
#[command(name = "pgmoneta-admin", version, disable_help_flag = true, disable_help_subcommand = true)]
#[command(after_help = ENVIRONMENT)]
struct Cli {
    /// The users or admins vault; required by the user commands.
    #[arg(short = 'f', long = "file", value_name = "FILE", global = true)]
    file: Option<PathBuf>,
    /// The user name (prompted for when missing).
    #[arg(short = 'U', long = "user", value_name = "NAME", global = true)]
    user: Option<String>,
    /// The password, or the master key for master-key (prompted for when missing).
    #[arg(short = 'P', long = "password", value_name = "PASSWORD", global = true)]
    password: Option<String>,
    /// Generate a random password (or master key).
    #[arg(short = 'g', long = "generate", global = true, conflicts_with = "password")]
    generate: bool,
    /// Length of a generated password.
    #[arg(
        short = 'l',
        long = "length",
        value_name = "N",
        global = true,
        default_value_t = admin::DEFAULT_LENGTH as u16,
        value_parser = clap::value_parser!(u16).range(1..=admin::MAX_LENGTH as i64),
    )]
    length: u16,
    /// Output format.
    #[arg(short = 'F', long = "format", value_enum, default_value_t = Format::Text, global = true)]
    format: Format,
    /// Print help.
    #[arg(short = '?', long = "help", action = ArgAction::Help, global = true)]
    help: Option<bool>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create the master key, ~/.pgmoneta/master.key.
    #[command(disable_help_flag = true)]
    MasterKey,
    /// Manage the users of a vault.
    #[command(disable_help_flag = true, subcommand_required = true)]
    User {
        #[command(subcommand)]
        action: UserCmd,
    },
}

#[derive(Debug, Subcommand)]
enum UserCmd {
    /// Add a user.
    #[command(disable_help_flag = true)]
    Add,
    /// Change the password of a user.
    #[command(disable_help_flag = true)]
    Edit,
    /// Remove a user.
    #[command(disable_help_flag = true)]
    Del,
    /// List the users.
    #[command(disable_help_flag = true)]
    Ls,
}

fn main() {
    pgmoneta_cli::print_man_page_if_asked(<Cli as clap::CommandFactory>::command());
    let cli = Cli::parse();
    let command = match cli.command {
        Cmd::MasterKey => Command::MasterKey,
        Cmd::User { action: UserCmd::Add } => Command::UserAdd,
        Cmd::User { action: UserCmd::Edit } => Command::UserEdit,
        Cmd::User { action: UserCmd::Del } => Command::UserDel,
        Cmd::User { action: UserCmd::Ls } => Command::UserList,
    };
    let env_password = match std::env::var(PASSWORD_ENV) {
        Ok(p) => Some(p).filter(|p| !p.is_empty()),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            eprintln!("pgmoneta-admin: {PASSWORD_ENV} is not valid UTF-8");
            std::process::exit(1);
        }
    };
    let options = Options {
        file: cli.file,
        user: cli.user,
        password: cli.password,
        env_password,
        generate: cli.generate,
        length: usize::from(cli.length),
        format: cli.format,
        master_key: None,
        allow_root: admin::root_allowed(std::env::var_os(ALLOW_ROOT_ENV).as_deref()),
    };
    let status = admin::execute(
        command,
        &options,
        &mut StdinInput::new(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    std::process::exit(status);
}
