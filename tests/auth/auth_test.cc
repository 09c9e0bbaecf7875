// The auth library alone: the user record's codec, Argon2id hashing and
// verification, permission lists and matching, the login rate limit.
#include <unistd.h>

#include <filesystem>
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "auth/auth.h"
#include "auth/directory.h"

namespace floe::auth {
namespace {

// Cheap enough for a unit test; the format and the check are the same.
const HashCost kCheap{.time_cost = 1, .memory_kib = 64, .parallelism = 1};

TEST(PasswordTest, AHashVerifiesItsPasswordOnly) {
  auto h = HashPassword("correct horse", kCheap);
  ASSERT_TRUE(h) << h.error().ToString();
  EXPECT_EQ(h->rfind("$argon2id$v=19$m=64,t=1,p=1$", 0), 0u) << *h;
  EXPECT_EQ(h->find("correct"), std::string::npos);
  EXPECT_TRUE(VerifyPassword(*h, "correct horse"));
  EXPECT_FALSE(VerifyPassword(*h, "correct horsf"));
  EXPECT_FALSE(VerifyPassword(*h, "correct hors"));
  EXPECT_FALSE(VerifyPassword(*h, ""));
}

TEST(PasswordTest, TheDefaultCostIsOwaspsMinimum) {
  auto h = HashPassword("pw");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->rfind("$argon2id$v=19$m=19456,t=2,p=1$", 0), 0u) << *h;
  EXPECT_TRUE(VerifyPassword(*h, "pw"));
}

TEST(PasswordTest, EachHashHasItsOwnSalt) {
  auto a = HashPassword("same", kCheap), b = HashPassword("same", kCheap);
  ASSERT_TRUE(a && b);
  EXPECT_NE(*a, *b);
  EXPECT_TRUE(VerifyPassword(*a, "same"));
  EXPECT_TRUE(VerifyPassword(*b, "same"));
}

TEST(PasswordTest, MalformedOrOtherHashesNeverVerify) {
  auto h = HashPassword("pw", kCheap);
  ASSERT_TRUE(h);
  std::string argon2i = *h;
  argon2i.replace(0, 10, "$argon2i$");
  for (const std::string& bad : {std::string(), std::string("pw"), std::string("$argon2id$"), argon2i,
                                 h->substr(0, h->size() - 3), *h + "x"})
    EXPECT_FALSE(VerifyPassword(bad, "pw")) << bad;
  EXPECT_FALSE(HashPassword("", kCheap));
  EXPECT_FALSE(HashPassword(std::string(kMaxPasswordBytes + 1, 'p'), kCheap));
}

TEST(UserRecordTest, RoundTrips) {
  User u{.name = "alice", .password_hash = *HashPassword("pw", kCheap),
         .permissions = {{Action::kPublish, "orders.*"}, {Action::kConsume, "*"}, {Action::kAdmin, "a/+/#"}}};
  auto d = DecodeUser(EncodeUser(u));
  ASSERT_TRUE(d) << d.error().ToString();
  EXPECT_EQ(*d, u);
}

TEST(UserRecordTest, RejectsWhatItCannotTrust) {
  User u{.name = "alice", .password_hash = *HashPassword("pw", kCheap), .permissions = {{Action::kConsume, "x"}}};
  const std::string good = EncodeUser(u);
  EXPECT_FALSE(DecodeUser(""));
  EXPECT_FALSE(DecodeUser(good.substr(0, good.size() - 1)));
  EXPECT_FALSE(DecodeUser(good + "x"));
  std::string v2 = good;
  v2[0] = 2;
  EXPECT_FALSE(DecodeUser(v2));
  User clear = u;
  clear.password_hash = "pw";  // never a clear password
  EXPECT_FALSE(DecodeUser(EncodeUser(clear)));
  User bad_name = u;
  bad_name.name = "a b";
  EXPECT_FALSE(DecodeUser(EncodeUser(bad_name)));
  std::string bad_action = good;
  bad_action[bad_action.size() - 4] = 9;  // the action byte before the pattern "x" (u16 length 1)
  EXPECT_FALSE(DecodeUser(bad_action));
}

TEST(UserNameTest, Rules) {
  for (const char* ok : {"a", "alice", "svc.orders-1", "bob@example.com", "A_B"}) EXPECT_TRUE(ValidateUserName(ok).ok()) << ok;
  for (const char* bad : {"", ".hidden", "$node", "a b", "a/b", "a:b"}) EXPECT_FALSE(ValidateUserName(bad).ok()) << bad;
  EXPECT_FALSE(ValidateUserName(std::string(kMaxUserNameBytes + 1, 'a')).ok());
}

TEST(PermissionListTest, ParsesAndFormats) {
  auto p = ParsePermissions("publish:orders.*,consume:*,admin");
  ASSERT_TRUE(p) << p.error().ToString();
  ASSERT_EQ(p->size(), 3u);
  EXPECT_EQ((*p)[0], (Permission{Action::kPublish, "orders.*"}));
  EXPECT_EQ((*p)[1], (Permission{Action::kConsume, "*"}));
  EXPECT_EQ((*p)[2], (Permission{Action::kAdmin, "*"}));
  EXPECT_EQ(FormatPermissions(*p), "publish:orders.*,consume:*,admin:*");
  EXPECT_TRUE(ParsePermissions("")->empty());
  for (const char* bad : {"write:x", "publish:", ",", "consume:a,,admin", "publish:a,"})
    EXPECT_FALSE(ParsePermissions(bad)) << bad;
}

TEST(MatchTest, GlobsOnStreamNames) {
  EXPECT_TRUE(MatchPattern("orders", "orders"));
  EXPECT_FALSE(MatchPattern("orders", "orders2"));
  EXPECT_FALSE(MatchPattern("orders", "order"));
  EXPECT_TRUE(MatchPattern("orders.*", "orders.eu"));
  EXPECT_TRUE(MatchPattern("orders.*", "orders."));
  EXPECT_FALSE(MatchPattern("orders.*", "orders"));
  EXPECT_FALSE(MatchPattern("orders.*", "xorders.eu"));
  EXPECT_TRUE(MatchPattern("*", "anything"));
  EXPECT_TRUE(MatchPattern("*.log", "a.b.log"));
  EXPECT_FALSE(MatchPattern("*.log", "a.b.logx"));
  EXPECT_TRUE(MatchPattern("a*b*c", "a-b-b-c"));
  EXPECT_FALSE(MatchPattern("a*b*c", "a-c-b"));
  EXPECT_TRUE(MatchPattern("logs/*", "logs/a/b"));  // '*' crosses '/' (topics too)
}

TEST(MatchTest, MqttFiltersOnTopics) {
  EXPECT_TRUE(MatchPattern("sensors/+/temp", "sensors/k1/temp"));
  EXPECT_FALSE(MatchPattern("sensors/+/temp", "sensors/k1/x/temp"));
  EXPECT_TRUE(MatchPattern("sensors/#", "sensors/k1/x"));
  EXPECT_TRUE(MatchPattern("sensors/#", "sensors"));
  EXPECT_FALSE(MatchPattern("sensors/#", "sensorsx"));
  EXPECT_TRUE(MatchPattern("#", "a/b"));
  EXPECT_FALSE(MatchPattern("+", "a/b"));
}

TEST(MatchTest, SubscribeNeedsAPatternCoveringTheWholeFilter) {
  EXPECT_TRUE(PatternCoversFilter("sensors/#", "sensors/+/temp"));
  EXPECT_TRUE(PatternCoversFilter("sensors/+/temp", "sensors/+/temp"));
  EXPECT_FALSE(PatternCoversFilter("sensors/+/temp", "sensors/#"));
  EXPECT_FALSE(PatternCoversFilter("sensors/k1/temp", "sensors/+/temp"));
  EXPECT_TRUE(PatternCoversFilter("sensors/*", "sensors/+/temp"));
  EXPECT_FALSE(PatternCoversFilter("sensors/*", "sensors/#"));  // "sensors/#" matches "sensors" too
  EXPECT_TRUE(PatternCoversFilter("sensors*", "sensors/#"));
  EXPECT_TRUE(PatternCoversFilter("*", "#"));
  EXPECT_FALSE(PatternCoversFilter("*/temp", "#"));
  EXPECT_FALSE(PatternCoversFilter("a/*b", "a/+"));
}

TEST(AllowedTest, ActionsAndPatternsTogether) {
  User u{.name = "u", .password_hash = "", .permissions = {{Action::kPublish, "orders.*"}, {Action::kConsume, "orders.eu"},
                                                           {Action::kConsume, "sensors/#"}}};
  EXPECT_TRUE(Allowed(u, Action::kPublish, "orders.eu"));
  EXPECT_FALSE(Allowed(u, Action::kConsume, "orders.us"));
  EXPECT_TRUE(Allowed(u, Action::kConsume, "orders.eu"));
  EXPECT_FALSE(Allowed(u, Action::kAdmin, "orders.eu"));
  EXPECT_TRUE(AllowedFilter(u, "sensors/+"));
  EXPECT_TRUE(AllowedFilter(u, "$share/g1/sensors/a"));
  EXPECT_FALSE(AllowedFilter(u, "$share/g1/other"));
  EXPECT_FALSE(AllowedFilter(u, "#"));
  EXPECT_TRUE(MaySee(u, "orders.us"));
  EXPECT_FALSE(MaySee(u, "payments"));
}

TEST(LoginLimiterTest, BlocksAnAddressAfterTooManyFailures) {
  LoginLimiter l({.max_failures = 3, .window = std::chrono::milliseconds(1000), .block_for = std::chrono::milliseconds(500)});
  const auto t0 = LoginLimiter::Clock::now();
  l.Failed("1.2.3.4", t0);
  l.Failed("1.2.3.4", t0);
  EXPECT_EQ(l.Blocked("1.2.3.4", t0).count(), 0);
  l.Failed("1.2.3.4", t0);
  EXPECT_GT(l.Blocked("1.2.3.4", t0).count(), 0);
  EXPECT_EQ(l.Blocked("5.6.7.8", t0).count(), 0);  // per address
  EXPECT_EQ(l.Blocked("1.2.3.4", t0 + std::chrono::milliseconds(501)).count(), 0);  // the block ends
  // Failures spread wider than the window never block.
  l.Failed("9.9.9.9", t0);
  l.Failed("9.9.9.9", t0 + std::chrono::milliseconds(600));
  l.Failed("9.9.9.9", t0 + std::chrono::milliseconds(1700));
  EXPECT_EQ(l.Blocked("9.9.9.9", t0 + std::chrono::milliseconds(1700)).count(), 0);
  // A success forgets the failures.
  l.Failed("7.7.7.7", t0);
  l.Failed("7.7.7.7", t0);
  l.Succeeded("7.7.7.7");
  l.Failed("7.7.7.7", t0);
  EXPECT_EQ(l.Blocked("7.7.7.7", t0).count(), 0);
}

}  // namespace
}  // namespace floe::auth

namespace floe::auth {
namespace {

class DirectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/auth_directory_" + std::to_string(::getpid());
    std::filesystem::create_directories(dir_);
    url_ = "sqlite:" + dir_ + "/bank.db";
    auto b = bank::OpenBank(url_);
    ASSERT_TRUE(b);
    writer_ = std::move(*b);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void PutUser(const std::string& name, const std::string& password, const std::string& perms) {
    User u{.name = name, .password_hash = *HashPassword(password, kCheap), .permissions = *ParsePermissions(perms)};
    ASSERT_TRUE(writer_->Put(UserKey(name), EncodeUser(u)));
  }
  std::unique_ptr<Directory> Open(Directory::Options o = {}) {
    auto b = bank::OpenBank(url_);
    EXPECT_TRUE(b);
    auto d = Directory::Open(std::move(*b), o);
    EXPECT_TRUE(d) << d.error().ToString();
    return std::move(*d);
  }
  static LoginResult Login(Directory& d, const std::string& name, const std::string& password,
                           const std::string& source = "10.0.0.1") {
    std::promise<LoginResult> p;
    d.Authenticate(name, password, source, [&](LoginResult r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  }
  std::string dir_, url_;
  std::unique_ptr<bank::Bank> writer_;
};

TEST_F(DirectoryTest, AcceptsTheRightPasswordOnly) {
  PutUser("alice", "s3cret", "consume:orders");
  auto d = Open();
  auto ok = Login(*d, "alice", "s3cret");
  ASSERT_TRUE(ok.user) << ok.message;
  EXPECT_EQ(ok.user->name, "alice");
  auto wrong = Login(*d, "alice", "s3cres");
  EXPECT_FALSE(wrong.user);
  EXPECT_EQ(wrong.refusal, Refusal::kBadCredentials);
  auto unknown = Login(*d, "mallory", "s3cret");
  EXPECT_FALSE(unknown.user);
  EXPECT_EQ(unknown.message, wrong.message);  // which of the two was wrong is not said
}

TEST_F(DirectoryTest, RateLimitsFailuresPerAddress) {
  PutUser("alice", "s3cret", "");
  auto d = Open();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Login(*d, "alice", "nope", "10.0.0.9").refusal, Refusal::kBadCredentials);
  // Now refused without a check, the right password included.
  auto blocked = Login(*d, "alice", "s3cret", "10.0.0.9");
  EXPECT_FALSE(blocked.user);
  EXPECT_EQ(blocked.refusal, Refusal::kRateLimited);
  EXPECT_TRUE(Login(*d, "alice", "s3cret", "10.0.0.10").user);  // another address is not
}

TEST_F(DirectoryTest, SeesChangesAtItsNextRefresh) {
  PutUser("alice", "pw", "consume:a");
  auto d = Open({.refresh = std::chrono::milliseconds(50)});
  ASSERT_TRUE(d->Find("alice"));
  PutUser("alice", "pw", "consume:b");
  const uint64_t before = d->refreshes();
  while (d->refreshes() < before + 2) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_TRUE(Allowed(*d->Find("alice"), Action::kConsume, "b"));
  ASSERT_TRUE(writer_->Delete(UserKey("alice")).ok());
  const uint64_t now = d->refreshes();
  while (d->refreshes() < now + 2) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_FALSE(d->Find("alice"));
}

TEST_F(DirectoryTest, TheNodesShareOneSecret) {
  auto a = Open();
  auto b = Open();
  EXPECT_EQ(a->node_secret().size(), 64u);
  EXPECT_EQ(a->node_secret(), b->node_secret());
  EXPECT_TRUE(Login(*a, std::string(kNodeUser), b->node_secret()).user);
  EXPECT_FALSE(Login(*a, std::string(kNodeUser), "x").user);
}

}  // namespace
}  // namespace floe::auth
