// floe: the single binary. `floe --help` lists the commands.
#include <cstring>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "base/logging.h"
#include "cli/commands.h"
#include "cli/json.h"
#include "cli/options.h"
#include "log/format.h"
#include "wire/protocol.h"

#ifndef FLOE_VERSION
#define FLOE_VERSION "unknown"
#endif
#ifndef FLOE_BUILD_TYPE
#define FLOE_BUILD_TYPE "unknown"
#endif

namespace {

std::string VersionText() {
  return fmt::format(
      "floe {} ({} build, {} {})\n"
      "floe protocol: versions {} to {}\n"
      "stream format: segment version {}, batch version {}",
      FLOE_VERSION, FLOE_BUILD_TYPE,
#if defined(__clang__)
      "clang", __clang_version__,
#else
      "GCC", __VERSION__,
#endif
      floe::wire::kMinVersion, floe::wire::kMaxVersion, floe::log::kSegmentVersion, floe::log::kBatchVersion);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"floe: a durable message broker.\n"
               "Streams are append-only logs on disk; an append is acknowledged only once it is durable.\n"
               "Numbers are range-checked before anything runs (a refused command line exits 2); with --json,\n"
               "every line on stdout is JSON, errors included (docs/cli.md)."};
  app.require_subcommand(1);
  app.set_version_flag("--version", VersionText(), "Print the version, build type and protocol versions");
  int exit_code = 0;
  // A command that opens streams in this process (floe log, floe bench log)
  // says only what went wrong; floe serve sets its own level.
  floe::logging::Configure(floe::logging::Level::kWarn, floe::logging::Format::kText);
  floe::cli::RegisterServeCommand(app, &exit_code);
  floe::cli::RegisterStreamCommands(app, &exit_code);
  floe::cli::RegisterClientCommands(app, &exit_code);
  floe::cli::RegisterClusterCommands(app, &exit_code);
  floe::cli::RegisterMqttCommands(app, &exit_code);
  floe::cli::RegisterUserCommands(app, &exit_code);
  floe::cli::RegisterLogCommands(app, &exit_code);
  floe::cli::RegisterDemoCommand(app, &exit_code);
  floe::cli::RegisterBenchCommands(app, &exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // A refused command line: nothing ran. Under --json the refusal is JSON
    // too, on stdout. A value refused may have come from --config: say so.
    bool json = false;
    for (int i = 1; i < argc; ++i) json = json || std::strcmp(argv[i], "--json") == 0;
    std::string config;
    if (const CLI::Option* c = app.get_config_ptr(); c != nullptr && c->count() > 0) config = c->as<std::string>();
    const bool named = !config.empty() && std::string_view(e.what()).find(config) != std::string_view::npos;
    if (json) {
      std::string what = e.what();
      if (!config.empty() && !named) what += " (read with --config " + config + ")";
      fmt::print("{}\n", floe::cli::ErrorJson(floe::Status::InvalidArgument(what)));
    } else {
      (void)app.exit(e);
      if (!config.empty() && !named) fmt::print(stderr, "(options were read from --config {} too)\n", config);
    }
    return floe::cli::kUsageExitCode;
  }
  return exit_code;
}
