// A node's view of the users (docs/security.md): every user record read
// from the bank, refreshed every refresh_ms on a thread of its own, so that a
// removed user or a changed permission reaches open connections within
// about that long; logins checked off the I/O threads (Argon2 is slow on
// purpose) and rate-limited per source address.
//
// Threads: Find and the accessors from any thread; Authenticate's `done`
// runs on the directory's verify thread. The directory outlives every
// connection that uses it (the node owns it, and stops the listeners first).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include <asio/thread_pool.hpp>

#include "auth/auth.h"
#include "bank/bank.h"
#include "base/mutex.h"

namespace floe::auth {

// Failed logins per source address: after max_failures within window, the
// address is refused without checking, for block_for (every refusal then
// restarts nothing: the block ends on time). A success clears the address.
class LoginLimiter {
 public:
  struct Options {
    int max_failures = 5;
    std::chrono::milliseconds window{10'000};
    std::chrono::milliseconds block_for{10'000};
  };
  explicit LoginLimiter(Options options) : options_(options) {}
  using Clock = std::chrono::steady_clock;
  // How long `source` stays refused; zero if it may try now.
  std::chrono::milliseconds Blocked(const std::string& source, Clock::time_point now);
  void Failed(const std::string& source, Clock::time_point now);
  void Succeeded(const std::string& source);

 private:
  struct Entry {
    int failures = 0;
    Clock::time_point first{};
    Clock::time_point blocked_until{};
  };
  const Options options_;
  Mutex mu_;
  std::map<std::string, Entry> entries_ GUARDED_BY(mu_);
};

// Why a login was refused.
enum class Refusal : uint8_t {
  kBadCredentials = 1,  // unknown user or wrong password: the same answer for both
  kRateLimited = 2,     // too many failures from this address lately
  kUnavailable = 3,     // the node could not check (no users read yet)
};
struct LoginResult {
  std::shared_ptr<const User> user;  // set when accepted
  Refusal refusal = Refusal::kBadCredentials;
  std::string message;  // for the client: never says which of user or password was wrong
};

class Directory {
 public:
  struct Options {
    std::chrono::milliseconds refresh{2000};
    LoginLimiter::Options limiter;
  };
  // Reads the users now (an unreadable bank fails the start), creates the
  // node secret if the bank has none, then refreshes on its thread.
  static Result<std::unique_ptr<Directory>> Open(std::unique_ptr<bank::Bank> bank, Options options);
  ~Directory();

  // The user as of the last refresh; nullptr if there is none of that name.
  // kNodeUser is the cluster's own principal: every permission.
  std::shared_ptr<const User> Find(std::string_view name) const;
  // Checks `name` and `password` on the verify thread; `source` is the
  // client's address (the rate limit's key).
  void Authenticate(std::string name, std::string password, std::string source,
                    std::function<void(LoginResult)> done);
  const std::string& node_secret() const { return node_secret_; }
  uint64_t refreshes() const;

 private:
  Directory(std::unique_ptr<bank::Bank> bank, Options options);
  Status Refresh();
  void RefreshLoop();
  LoginResult Check(const std::string& name, const std::string& password, const std::string& source);

  const std::unique_ptr<bank::Bank> bank_;
  const Options options_;
  std::string node_secret_;
  std::string dummy_hash_;  // verified for an unknown user, so both take as long
  LoginLimiter limiter_;
  asio::thread_pool verify_{1};
  std::shared_ptr<const User> node_user_;

  mutable Mutex mu_;
  std::shared_ptr<const std::map<std::string, std::shared_ptr<const User>, std::less<>>> users_ GUARDED_BY(mu_);
  uint64_t refreshes_ GUARDED_BY(mu_) = 0;
  bool stop_ GUARDED_BY(mu_) = false;
  CondVar cv_;
  std::thread refresher_;
};

}  // namespace floe::auth
