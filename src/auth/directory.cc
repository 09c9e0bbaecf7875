#include "auth/directory.h"

#include <sys/random.h>

#include <cstdio>

#include <asio/post.hpp>
#include <fmt/format.h>

#include "base/logging.h"

namespace floe::auth {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// --- LoginLimiter ----------------------------------------------------------------

milliseconds LoginLimiter::Blocked(const std::string& source, Clock::time_point now) {
  MutexLock l(&mu_);
  auto it = entries_.find(source);
  if (it == entries_.end() || it->second.blocked_until <= now) return milliseconds(0);
  return std::chrono::duration_cast<milliseconds>(it->second.blocked_until - now) + milliseconds(1);
}

void LoginLimiter::Failed(const std::string& source, Clock::time_point now) {
  MutexLock l(&mu_);
  // Bounded: entries whose window and block are over go first.
  if (entries_.size() > 10000) {
    for (auto it = entries_.begin(); it != entries_.end();)
      it = (it->second.blocked_until <= now && now - it->second.first > options_.window) ? entries_.erase(it) : ++it;
  }
  Entry& e = entries_[source];
  if (e.failures == 0 || now - e.first > options_.window) {
    e.failures = 0;
    e.first = now;
  }
  if (++e.failures >= options_.max_failures) {
    e.blocked_until = now + options_.block_for;
    e.failures = 0;  // after the block, a fresh window
  }
}

void LoginLimiter::Succeeded(const std::string& source) {
  MutexLock l(&mu_);
  entries_.erase(source);
}

// --- Directory -------------------------------------------------------------------

namespace {

Result<std::string> RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  size_t got = 0;
  while (got < bytes) {
    const ssize_t n = ::getrandom(raw.data() + got, bytes - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Err(Status::FromErrno(errno, "getrandom"));
    }
    got += static_cast<size_t>(n);
  }
  std::string hex;
  for (unsigned char c : raw) hex += fmt::format("{:02x}", c);
  return hex;
}

// Constant time in the contents (not the length: the secret's is public).
bool SameSecret(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

Result<std::string> LoadNodeSecret(bank::Bank& bank) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto v = bank.Get(kNodeSecretKey);
    if (v) return v->value;
    if (!v.error().IsNotFound()) return Err(v.error());
    auto secret = RandomHex(32);
    if (!secret) return secret;
    auto put = bank.Put(std::string(kNodeSecretKey), *secret, 0);
    if (put) return *secret;
    if (put.error().code() != ErrorCode::kAborted) return Err(put.error());
    // Another node wrote it first: read theirs.
  }
  return Err(Status::Unavailable("the node secret could not be read nor written"));
}

}  // namespace

Directory::Directory(std::unique_ptr<bank::Bank> bank, Options options)
    : bank_(std::move(bank)), options_(options), limiter_(options.limiter) {}

Result<std::unique_ptr<Directory>> Directory::Open(std::unique_ptr<bank::Bank> bank, Options options) {
  std::unique_ptr<Directory> d(new Directory(std::move(bank), options));
  auto secret = LoadNodeSecret(*d->bank_);
  if (!secret) return Err(secret.error());
  d->node_secret_ = std::move(*secret);
  auto node = std::make_shared<User>();
  node->name = std::string(kNodeUser);
  node->permissions = {{Action::kPublish, "*"}, {Action::kConsume, "*"}, {Action::kAdmin, "*"}};
  d->node_user_ = std::move(node);
  auto dummy = HashPassword("floe-no-such-user");
  if (!dummy) return Err(dummy.error());
  d->dummy_hash_ = std::move(*dummy);
  FLOE_RETURN_ERR_IF_ERROR(d->Refresh());
  d->refresher_ = std::thread([p = d.get()] { p->RefreshLoop(); });
  return d;
}

Directory::~Directory() {
  {
    MutexLock l(&mu_);
    stop_ = true;
    cv_.SignalAll();
  }
  if (refresher_.joinable()) refresher_.join();
  verify_.join();
}

Status Directory::Refresh() {
  auto kvs = bank_->List(kUsersPrefix);
  if (!kvs) return kvs.error();
  auto users = std::make_shared<std::map<std::string, std::shared_ptr<const User>, std::less<>>>();
  for (const auto& kv : *kvs) {
    auto u = DecodeUser(kv.value);
    if (!u || UserKey(u->name) != kv.key) {
      // Left out: nobody logs in as a record the node cannot read.
      logging::Error("auth.user_unreadable",
                     fmt::format("ignoring the unreadable user record {}: {}", kv.key,
                                 u ? std::string("its name does not match its key") : u.error().ToString()));
      continue;
    }
    std::string name = u->name;  // (not u->name: the make_shared below moves it)
    users->emplace(std::move(name), std::make_shared<const User>(std::move(*u)));
  }
  MutexLock l(&mu_);
  users_ = std::move(users);
  ++refreshes_;
  return Status::OK();
}

void Directory::RefreshLoop() {
  bool warned = false;
  MutexLock l(&mu_);
  while (!stop_) {
    const auto next = Clock::now() + options_.refresh;
    while (!stop_ && cv_.WaitUntil(&mu_, next)) {
    }
    if (stop_) break;
    mu_.Unlock();
    Status s = Refresh();
    if (!s.ok() && !warned) {
      // The last users read stay in force meanwhile.
      logging::Warn("auth.refresh_failed",
                    fmt::format("reading the users from the bank failed (retrying every {} ms): {}",
                                options_.refresh.count(), s.ToString()));
    }
    warned = !s.ok();
    mu_.Lock();
  }
}

uint64_t Directory::refreshes() const {
  MutexLock l(&mu_);
  return refreshes_;
}

std::shared_ptr<const User> Directory::Find(std::string_view name) const {
  if (name == kNodeUser) return node_user_;
  MutexLock l(&mu_);
  auto it = users_->find(name);
  return it == users_->end() ? nullptr : it->second;
}

void Directory::Authenticate(std::string name, std::string password, std::string source,
                             std::function<void(LoginResult)> done) {
  asio::post(verify_, [this, name = std::move(name), password = std::move(password), source = std::move(source),
                       done = std::move(done)]() mutable { done(Check(name, password, source)); });
}

LoginResult Directory::Check(const std::string& name, const std::string& password, const std::string& source) {
  LoginResult r;
  const auto now = Clock::now();
  if (const auto wait = limiter_.Blocked(source, now); wait.count() > 0) {
    r.refusal = Refusal::kRateLimited;
    r.message = fmt::format("too many failed logins from {}; try again in {} s", source, (wait.count() + 999) / 1000);
    return r;
  }
  bool ok = false;
  std::shared_ptr<const User> user;
  if (name == kNodeUser) {
    ok = SameSecret(password, node_secret_);
    user = node_user_;
  } else {
    user = Find(name);
    // An unknown user costs a verify too: the time taken says nothing.
    ok = VerifyPassword(user ? user->password_hash : dummy_hash_, password) && user != nullptr;
  }
  if (!ok) {
    limiter_.Failed(source, now);
    r.refusal = Refusal::kBadCredentials;
    r.message = "bad user name or password";
    return r;
  }
  limiter_.Succeeded(source);
  r.user = std::move(user);
  return r;
}

}  // namespace floe::auth
