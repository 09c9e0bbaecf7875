#include "support/spawn_self.h"

#include <fcntl.h>
#include <unistd.h>

#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace floe::test {

pid_t SpawnSelf(const std::string& env_name, const std::string& env_value, std::initializer_list<int> fds) {
  const ::testing::TestInfo* t = ::testing::UnitTest::GetInstance()->current_test_info();
  if (t == nullptr) return -1;
  // Everything the child needs is built before fork(): after it, only
  // async-signal-safe calls until exec.
  std::string exe = "/proc/self/exe";
  std::string filter = std::string("--gtest_filter=") + t->test_suite_name() + "." + t->name();
  const std::string assignment = env_name + "=";
  std::vector<std::string> env_strings{assignment + env_value};
  for (char** e = environ; *e != nullptr; ++e)
    if (std::string_view(*e).rfind(assignment, 0) != 0) env_strings.emplace_back(*e);
  std::vector<char*> argv{exe.data(), filter.data(), nullptr};
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<int> from(fds);
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  for (size_t i = 0; i < from.size(); ++i)
    if (::dup2(from[i], SpawnedFd(static_cast<int>(i))) < 0) ::_exit(126);
  const int devnull = ::open("/dev/null", O_WRONLY);
  if (devnull >= 0) ::dup2(devnull, STDOUT_FILENO);
  ::execve(exe.c_str(), argv.data(), envp.data());
  ::_exit(127);
}

}  // namespace floe::test
