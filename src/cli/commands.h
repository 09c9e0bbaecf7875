// Subcommands of the floe binary. Each Register* adds its subcommand to the
// app; the callback it installs sets the process exit code.
#pragma once

#include <CLI/CLI.hpp>

namespace floe::cli {

void RegisterLogCommands(CLI::App& app, int* exit_code);
void RegisterDemoCommand(CLI::App& app, int* exit_code);
void RegisterBenchCommands(CLI::App& app, int* exit_code);
void RegisterServeCommand(CLI::App& app, int* exit_code);
void RegisterStreamCommands(CLI::App& app, int* exit_code);
void RegisterClientCommands(CLI::App& app, int* exit_code);
void RegisterClusterCommands(CLI::App& app, int* exit_code);
// `floe user add|remove|list` (cli/user_commands.cc).
void RegisterUserCommands(CLI::App& app, int* exit_code);
// `floe mqtt retained|sessions`.
void RegisterMqttCommands(CLI::App& app, int* exit_code);
// Adds `publish` and `consume` under `floe bench`.
void RegisterBrokerBenchCommands(CLI::App* bench, int* exit_code);
// Adds `failover` and `rebalance` under `floe bench`.
void RegisterClusterBenchCommands(CLI::App* bench, int* exit_code);

}  // namespace floe::cli
