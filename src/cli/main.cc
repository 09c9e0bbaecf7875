// floe: the single binary. `floe --help` lists the commands.
#include <cstring>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

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
    // too, on stdout.
    bool json = false;
    for (int i = 1; i < argc; ++i) json = json || std::strcmp(argv[i], "--json") == 0;
    if (json) {
      fmt::print("{}\n", floe::cli::ErrorJson(floe::Status::InvalidArgument(e.what())));
    } else {
      (void)app.exit(e);
    }
    return floe::cli::kUsageExitCode;
  }
  return exit_code;
}
