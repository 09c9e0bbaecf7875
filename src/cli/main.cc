// floe: the single binary. `floe --help` lists the commands.
#include <CLI/CLI.hpp>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"floe: a durable message broker.\n"
               "Streams are append-only logs on disk; an append is acknowledged only once it is durable."};
  app.require_subcommand(1);
  int exit_code = 0;
  floe::cli::RegisterServeCommand(app, &exit_code);
  floe::cli::RegisterClientCommands(app, &exit_code);
  floe::cli::RegisterClusterCommands(app, &exit_code);
  floe::cli::RegisterLogCommands(app, &exit_code);
  floe::cli::RegisterDemoCommand(app, &exit_code);
  floe::cli::RegisterBenchCommands(app, &exit_code);
  CLI11_PARSE(app, argc, argv);
  return exit_code;
}
