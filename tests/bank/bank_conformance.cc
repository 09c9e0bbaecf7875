// The bank conformance suite (see bank_conformance.h).
#include "bank/bank_conformance.h"

#include "support/spawn_self.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdint>
#include <iostream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace floe::bank::conformance {

bool InChild() { return ::getenv(kChildLocationEnv) != nullptr; }

void BankConformanceTest::SetUp() {
  if (InChild()) {
    location_ = ::getenv(kChildLocationEnv);
    return;  // the child opens its own handle
  }
  location_ = GetParam().new_location();
  bank_ = Open();
  ASSERT_NE(bank_, nullptr);
}

void BankConformanceTest::TearDown() {
  bank_.reset();
  if (InChild()) return;
  if (GetParam().destroy) GetParam().destroy(location_);
}

std::unique_ptr<Bank> BankConformanceTest::Open() {
  auto b = GetParam().open(location_);
  EXPECT_TRUE(b) << "open " << location_ << ": " << b.error().ToString();
  return b ? std::move(*b) : nullptr;
}

pid_t BankConformanceTest::SpawnChild(std::initializer_list<int> fds) {
  return test::SpawnSelf(kChildLocationEnv, location_, fds);
}

void BankConformanceTest::Reopen() {
  bank_.reset();
  bank_ = Open();
  ASSERT_NE(bank_, nullptr);
}

namespace {

void ExpectAbsent(Bank& bank, std::string_view key) {
  auto got = bank.Get(key);
  ASSERT_FALSE(got) << "key '" << key << "' is present with '" << got->value << "'";
  EXPECT_EQ(got.error().code(), ErrorCode::kNotFound) << got.error().ToString();
}

void ExpectValue(Bank& bank, std::string_view key, std::string_view value, uint64_t version = 0) {
  auto got = bank.Get(key);
  ASSERT_TRUE(got) << "key '" << key << "': " << got.error().ToString();
  EXPECT_EQ(got->value, value) << key;
  if (version != 0) {
    EXPECT_EQ(got->version, version) << key;
  }
}

std::vector<std::string> Keys(const std::vector<KeyValue>& kvs) {
  std::vector<std::string> out;
  for (const auto& kv : kvs) out.push_back(kv.key);
  return out;
}

// Adds one to the decimal counter at `key` by compare-and-set, retrying a
// lost race (Aborted) and a busy bank (Unavailable). Any other error is
// returned. Counts the retries.
Status CasIncrement(Bank& bank, const std::string& key, uint64_t* retries) {
  for (;;) {
    uint64_t version = 0;
    uint64_t value = 0;
    auto got = bank.Get(key);
    if (got) {
      version = got->version;
      value = std::stoull(got->value);
    } else if (!got.error().IsNotFound()) {
      if (got.error().code() == ErrorCode::kUnavailable) {
        ++*retries;
        continue;
      }
      return got.error();
    }
    auto put = bank.Put(key, std::to_string(value + 1), version);
    if (put) return Status::OK();
    if (put.error().code() != ErrorCode::kAborted && put.error().code() != ErrorCode::kUnavailable)
      return put.error();
    ++*retries;
  }
}

// --- Get and Put -------------------------------------------------------------------

TEST_P(BankConformanceTest, GetMissingIsNotFound) {
  ExpectAbsent(*bank_, "nothing/here");
  ExpectAbsent(*bank_, "x");
  ASSERT_TRUE(bank_->Put("a", "1"));
  ExpectAbsent(*bank_, "b");
  ExpectAbsent(*bank_, "a/");   // a longer key is another key
  ExpectAbsent(*bank_, "A");    // keys are case-sensitive
}

TEST_P(BankConformanceTest, PutThenGet) {
  auto v = bank_->Put("streams/orders", "config");
  ASSERT_TRUE(v) << v.error().ToString();
  EXPECT_GT(*v, 0u);  // 0 means absent
  ExpectValue(*bank_, "streams/orders", "config", *v);
}

TEST_P(BankConformanceTest, OverwriteGivesANewValueAndVersion) {
  auto v1 = bank_->Put("k", "one");
  ASSERT_TRUE(v1);
  auto v2 = bank_->Put("k", "two");
  ASSERT_TRUE(v2);
  EXPECT_GT(*v2, *v1);
  ExpectValue(*bank_, "k", "two", *v2);
  auto v3 = bank_->Put("k", "two");  // the same value again is still a write
  ASSERT_TRUE(v3);
  EXPECT_GT(*v3, *v2);
  ExpectValue(*bank_, "k", "two", *v3);
}

TEST_P(BankConformanceTest, VersionsStrictlyIncreaseAcrossKeysAndWrites) {
  // bank.h: each write of a key gives it a version greater than any version
  // the bank issued before, so versions also order writes across keys.
  uint64_t last = 0;
  for (int i = 0; i < 30; ++i) {
    const std::string key = "k" + std::to_string(i % 4);
    auto v = bank_->Put(key, std::to_string(i));
    ASSERT_TRUE(v) << v.error().ToString();
    EXPECT_GT(*v, last) << "write " << i;
    last = *v;
    ExpectValue(*bank_, key, std::to_string(i), *v);
  }
  // A commit of several puts: each above everything before it.
  std::vector<Op> ops = {Op::Put("m1", "a"), Op::Put("m2", "b"), Op::Put("k0", "c")};
  auto vs = bank_->Commit(ops);
  ASSERT_TRUE(vs) << vs.error().ToString();
  ASSERT_EQ(vs->size(), 3u);
  uint64_t commit_max = 0;
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_GT((*vs)[i], last) << i;
    commit_max = std::max(commit_max, (*vs)[i]);
    ExpectValue(*bank_, ops[i].key, ops[i].value, (*vs)[i]);
  }
  last = commit_max;
  // Deleted and written again: a version above the old one, never reused.
  ASSERT_TRUE(bank_->Delete("k1").ok());
  auto again = bank_->Put("k1", "back", 0);
  ASSERT_TRUE(again) << again.error().ToString();
  EXPECT_GT(*again, last);
  last = *again;
  // A failed commit issues nothing visible; the next write is still higher.
  auto failed = bank_->Put("k2", "x", 1);
  ASSERT_FALSE(failed);
  auto next = bank_->Put("k3", "y");
  ASSERT_TRUE(next);
  EXPECT_GT(*next, last);
}

// --- Compare-and-set ------------------------------------------------------------------

TEST_P(BankConformanceTest, CompareAndSetWithTheRightVersion) {
  auto v1 = bank_->Put("k", "one");
  ASSERT_TRUE(v1);
  auto v2 = bank_->Put("k", "two", *v1);
  ASSERT_TRUE(v2) << v2.error().ToString();
  EXPECT_GT(*v2, *v1);
  ExpectValue(*bank_, "k", "two", *v2);
  ASSERT_TRUE(bank_->Delete("k", *v2).ok());
  ExpectAbsent(*bank_, "k");
}

TEST_P(BankConformanceTest, CompareAndSetWithAWrongVersionIsAbortedAndWritesNothing) {
  auto v1 = bank_->Put("k", "one");
  ASSERT_TRUE(v1);
  auto v2 = bank_->Put("k", "two");
  ASSERT_TRUE(v2);
  for (uint64_t wrong : {*v1, *v2 + 1, *v2 + 1000, uint64_t{0}}) {
    auto r = bank_->Put("k", "lost update", wrong);
    ASSERT_FALSE(r) << "expected version " << wrong;
    EXPECT_EQ(r.error().code(), ErrorCode::kAborted) << r.error().ToString();
    ExpectValue(*bank_, "k", "two", *v2);
    Status d = bank_->Delete("k", wrong);
    EXPECT_EQ(d.code(), ErrorCode::kAborted) << d.ToString();
    ExpectValue(*bank_, "k", "two", *v2);
  }
}

TEST_P(BankConformanceTest, ExpectedZeroMeansMustBeAbsent) {
  auto created = bank_->Put("k", "first", 0);
  ASSERT_TRUE(created) << created.error().ToString();
  auto again = bank_->Put("k", "second", 0);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::kAborted);
  ExpectValue(*bank_, "k", "first", *created);
  // After a delete the key is absent again: 0 matches, the old version not.
  ASSERT_TRUE(bank_->Delete("k").ok());
  auto stale = bank_->Put("k", "stale", *created);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code(), ErrorCode::kAborted);
  ExpectAbsent(*bank_, "k");
  ASSERT_TRUE(bank_->Put("k", "third", 0));
  ExpectValue(*bank_, "k", "third");
}

TEST_P(BankConformanceTest, ANonZeroVersionNeverMatchesAnAbsentKey) {
  for (uint64_t v : {uint64_t{1}, uint64_t{2}, uint64_t{1} << 40}) {
    auto r = bank_->Put("absent", "x", v);
    ASSERT_FALSE(r) << v;
    EXPECT_EQ(r.error().code(), ErrorCode::kAborted);
  }
  ExpectAbsent(*bank_, "absent");
}

// --- Delete -----------------------------------------------------------------------

TEST_P(BankConformanceTest, DeleteRemovesTheKey) {
  ASSERT_TRUE(bank_->Put("a/1", "x"));
  ASSERT_TRUE(bank_->Put("a/2", "y"));
  ASSERT_TRUE(bank_->Delete("a/1").ok());
  ExpectAbsent(*bank_, "a/1");
  ExpectValue(*bank_, "a/2", "y");
  auto list = bank_->List("a/");
  ASSERT_TRUE(list);
  EXPECT_EQ(Keys(*list), std::vector<std::string>{"a/2"});
}

TEST_P(BankConformanceTest, DeleteOfAnAbsentKeyIsOk) {
  EXPECT_TRUE(bank_->Delete("never").ok());
  EXPECT_TRUE(bank_->Delete("never", 0).ok());  // expected absent, and it is
  ExpectAbsent(*bank_, "never");
}

// --- Check ops and atomic commits -----------------------------------------------------

TEST_P(BankConformanceTest, CheckOpComparesWithoutWriting) {
  auto v = bank_->Put("lease", "node-1");
  ASSERT_TRUE(v);
  std::vector<Op> ok_ops = {Op::Check("lease", *v), Op::Check("absent", 0), Op::Put("data", "d")};
  auto r = bank_->Commit(ok_ops);
  ASSERT_TRUE(r) << r.error().ToString();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0], 0u);  // checks return 0
  EXPECT_EQ((*r)[1], 0u);
  EXPECT_GT((*r)[2], *v);
  ExpectValue(*bank_, "lease", "node-1", *v);  // a check does not bump the version
  ExpectAbsent(*bank_, "absent");             // nor create the key

  for (const Op& bad : {Op::Check("lease", *v + 1), Op::Check("lease", 0), Op::Check("absent", *v)}) {
    std::vector<Op> ops = {bad, Op::Put("data", "overwritten")};
    auto f = bank_->Commit(ops);
    ASSERT_FALSE(f);
    EXPECT_EQ(f.error().code(), ErrorCode::kAborted);
    ExpectValue(*bank_, "data", "d", (*r)[2]);
  }
}

TEST_P(BankConformanceTest, CommitAppliesEveryOpAndReturnsVersions) {
  ASSERT_TRUE(bank_->Put("old", "x"));
  auto keep = bank_->Put("keep", "k");
  ASSERT_TRUE(keep);
  std::vector<Op> ops = {Op::Put("a", "1"), Op::Put("b", "2", 0), Op::Delete("old"), Op::Check("keep", *keep),
                         Op::Put("keep", "k2", *keep)};
  auto r = bank_->Commit(ops);
  ASSERT_TRUE(r) << r.error().ToString();
  ASSERT_EQ(r->size(), ops.size());
  EXPECT_GT((*r)[0], *keep);
  EXPECT_GT((*r)[1], *keep);
  EXPECT_EQ((*r)[2], 0u);
  EXPECT_EQ((*r)[3], 0u);
  EXPECT_GT((*r)[4], *keep);
  ExpectValue(*bank_, "a", "1", (*r)[0]);
  ExpectValue(*bank_, "b", "2", (*r)[1]);
  ExpectAbsent(*bank_, "old");
  ExpectValue(*bank_, "keep", "k2", (*r)[4]);
}

TEST_P(BankConformanceTest, EmptyCommitIsOk) {
  auto r = bank_->Commit({});
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_TRUE(r->empty());
}

TEST_P(BankConformanceTest, CommitIsAllOrNothing) {
  // One failing compare, wherever it sits among the ops, and none of the
  // puts or deletes is applied.
  auto base_b = bank_->Put("b", "b0");
  auto base_c = bank_->Put("c", "c0");
  auto base_d = bank_->Put("d", "d0");
  ASSERT_TRUE(base_b && base_c && base_d);
  const std::vector<Op> good = {Op::Put("a", "new"), Op::Put("b", "b1", *base_b), Op::Delete("c", *base_c),
                                Op::Check("d", *base_d), Op::Put("e", "new", 0)};
  const std::vector<Op> bad = {Op::Put("a", "new", *base_b), Op::Put("b", "b1", *base_b + 100),
                               Op::Delete("c", *base_b), Op::Check("d", *base_c), Op::Put("e", "new", *base_b)};
  for (size_t failing = 0; failing < good.size(); ++failing) {
    std::vector<Op> ops = good;
    ops[failing] = bad[failing];
    auto r = bank_->Commit(ops);
    ASSERT_FALSE(r) << "op " << failing << " fails its compare";
    EXPECT_EQ(r.error().code(), ErrorCode::kAborted) << r.error().ToString();
    ExpectAbsent(*bank_, "a");
    ExpectValue(*bank_, "b", "b0", *base_b);
    ExpectValue(*bank_, "c", "c0", *base_c);
    ExpectValue(*bank_, "d", "d0", *base_d);
    ExpectAbsent(*bank_, "e");
  }
  // And the good commit does it all.
  auto r = bank_->Commit(good);
  ASSERT_TRUE(r) << r.error().ToString();
  ExpectValue(*bank_, "a", "new");
  ExpectValue(*bank_, "b", "b1");
  ExpectAbsent(*bank_, "c");
  ExpectValue(*bank_, "d", "d0", *base_d);
  ExpectValue(*bank_, "e", "new");
}

// --- List -------------------------------------------------------------------------

TEST_P(BankConformanceTest, ListByPrefixInKeyOrder) {
  for (const char* k : {"a/2", "a/10", "a/1", "a/", "a/1/x", "b/1", "a0", "a", "Z/1"}) {
    ASSERT_TRUE(bank_->Put(k, std::string("v:") + k));
  }
  auto list = bank_->List("a/");
  ASSERT_TRUE(list) << list.error().ToString();
  EXPECT_EQ(Keys(*list), (std::vector<std::string>{"a/", "a/1", "a/1/x", "a/10", "a/2"}));
  for (const KeyValue& kv : *list) {
    auto got = bank_->Get(kv.key);
    ASSERT_TRUE(got);
    EXPECT_EQ(kv.value, "v:" + kv.key);
    EXPECT_EQ(kv.version, got->version) << kv.key;
  }
  auto all = bank_->List("");
  ASSERT_TRUE(all);
  EXPECT_EQ(Keys(*all), (std::vector<std::string>{"Z/1", "a", "a/", "a/1", "a/1/x", "a/10", "a/2", "a0", "b/1"}));
  auto a = bank_->List("a");
  ASSERT_TRUE(a);
  EXPECT_EQ(Keys(*a), (std::vector<std::string>{"a", "a/", "a/1", "a/1/x", "a/10", "a/2", "a0"}));
  auto one = bank_->List("a/1");
  ASSERT_TRUE(one);
  EXPECT_EQ(Keys(*one), (std::vector<std::string>{"a/1", "a/1/x", "a/10"}));
}

TEST_P(BankConformanceTest, ListDoesNotLeakNeighbours) {
  // "a0" sorts right after every "a/..." key ('0' = '/' + 1), and "a." right
  // before: neither belongs to the prefix "a/".
  for (const char* k : {"a.", "a/x", "a0", "a/", "a", "b"}) ASSERT_TRUE(bank_->Put(k, "v"));
  auto list = bank_->List("a/");
  ASSERT_TRUE(list);
  EXPECT_EQ(Keys(*list), (std::vector<std::string>{"a/", "a/x"}));
  auto none = bank_->List("c");
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
  auto missing = bank_->List("a/y");
  ASSERT_TRUE(missing);
  EXPECT_TRUE(missing->empty());
}

TEST_P(BankConformanceTest, KeysOrderBytewiseUnsigned) {
  // Keys are byte strings ordered bytewise: 0x7f < 0x80 < 0xff, as unsigned.
  const std::vector<std::string> keys = {std::string("p\x01", 2), std::string("p\x7f", 2), std::string("p\x80", 2),
                                         std::string("p\xff", 2), std::string("p\xff\x00", 3),
                                         std::string("p\xff\xff", 3)};
  for (auto it = keys.rbegin(); it != keys.rend(); ++it) ASSERT_TRUE(bank_->Put(*it, "v"));
  ASSERT_TRUE(bank_->Put("q", "v"));
  auto list = bank_->List("p");
  ASSERT_TRUE(list);
  EXPECT_EQ(Keys(*list), keys);
  auto high = bank_->List(std::string("p\xff", 2));
  ASSERT_TRUE(high);
  EXPECT_EQ(Keys(*high), (std::vector<std::string>{keys[3], keys[4], keys[5]}));
}

TEST_P(BankConformanceTest, ListOfManyKeys) {
  std::vector<std::string> want;
  for (int i = 0; i < 500; ++i) {
    char k[32];
    std::snprintf(k, sizeof k, "cursors/s/%04d", (i * 7919) % 500);  // written out of order
    ASSERT_TRUE(bank_->Put(k, std::to_string(i)));
  }
  for (int i = 0; i < 500; ++i) {
    char k[32];
    std::snprintf(k, sizeof k, "cursors/s/%04d", i);
    want.push_back(k);
  }
  ASSERT_TRUE(bank_->Put("cursors/t/0000", "other stream"));
  auto list = bank_->List("cursors/s/");
  ASSERT_TRUE(list);
  EXPECT_EQ(Keys(*list), want);
}

// --- Binary keys and values -----------------------------------------------------------

TEST_P(BankConformanceTest, BinaryKeysAndValuesWithNulBytes) {
  std::string all_bytes;
  for (int c = 0; c < 256; ++c) all_bytes.push_back(static_cast<char>(c));
  const std::string k1("k\0a", 3), k2("k\0b", 3), k3("k", 1), k4("k\0", 2);
  const std::string v1("\0\0\0", 3);
  ASSERT_TRUE(bank_->Put(k1, v1));
  ASSERT_TRUE(bank_->Put(k2, all_bytes));
  ASSERT_TRUE(bank_->Put(k3, "plain"));
  // Keys differing only after a NUL are distinct keys.
  ExpectValue(*bank_, k1, v1);
  ExpectValue(*bank_, k2, all_bytes);
  ExpectValue(*bank_, k3, "plain");
  ExpectAbsent(*bank_, k4);
  auto list = bank_->List(k4);  // "k\0" is a prefix of k1 and k2, not of k3
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].key, k1);
  EXPECT_EQ((*list)[0].value, v1);
  EXPECT_EQ((*list)[1].key, k2);
  EXPECT_EQ((*list)[1].value, all_bytes);
  // A key that is all bytes.
  ASSERT_TRUE(bank_->Put(all_bytes, k1));
  ExpectValue(*bank_, all_bytes, k1);
  // Compare-and-set and delete on binary keys.
  auto v = bank_->Get(k1);
  ASSERT_TRUE(v);
  ASSERT_TRUE(bank_->Put(k1, "y", v->version));
  ASSERT_TRUE(bank_->Delete(k2).ok());
  ExpectAbsent(*bank_, k2);
  ExpectValue(*bank_, k1, "y");
}

TEST_P(BankConformanceTest, EmptyAndLargeValues) {
  ASSERT_TRUE(bank_->Put("empty", ""));
  ExpectValue(*bank_, "empty", "");
  auto list = bank_->List("empty");
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].value, "");
  std::string big(1 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 2654435761u >> 24);
  ASSERT_TRUE(bank_->Put("big", big));
  ExpectValue(*bank_, "big", big);
}

// --- Durability ----------------------------------------------------------------------

TEST_P(BankConformanceTest, DurableAcrossReopen) {
  auto va = bank_->Put("a", "1");
  auto vb = bank_->Put(std::string("b\0", 2), std::string("2\0", 2));
  ASSERT_TRUE(bank_->Put("gone", "x"));
  ASSERT_TRUE(bank_->Delete("gone").ok());
  ASSERT_TRUE(va && vb);
  Reopen();
  ExpectValue(*bank_, "a", "1", *va);
  ExpectValue(*bank_, std::string("b\0", 2), std::string("2\0", 2), *vb);
  ExpectAbsent(*bank_, "gone");
  // Versions keep increasing after a reopen: never one issued before.
  auto vc = bank_->Put("c", "3");
  ASSERT_TRUE(vc);
  EXPECT_GT(*vc, std::max(*va, *vb));
  // Compare-and-set still works against the versions read back.
  ASSERT_TRUE(bank_->Put("a", "1'", *va));
}

TEST_P(BankConformanceTest, TwoHandlesSeeEachOthersWrites) {
  auto other = Open();
  ASSERT_NE(other, nullptr);
  auto v = bank_->Put("k", "from one");
  ASSERT_TRUE(v);
  ExpectValue(*other, "k", "from one", *v);
  auto stale = other->Put("k", "from two", *v + 1);
  ASSERT_FALSE(stale);
  auto v2 = other->Put("k", "from two", *v);
  ASSERT_TRUE(v2);
  ExpectValue(*bank_, "k", "from two", *v2);
}

// A failed compare must leave the handle as it was before the commit: no
// transaction or snapshot held open, so it reads what others wrote since and
// can write again.
TEST_P(BankConformanceTest, AfterAnAbortedCommitAHandleSeesAndOverwritesOthersWrites) {
  auto other = Open();
  ASSERT_NE(other, nullptr);
  auto v1 = bank_->Put("k", "1");
  ASSERT_TRUE(v1);
  auto aborted = bank_->Put("k", "lost", *v1 + 1);
  ASSERT_FALSE(aborted);
  ASSERT_EQ(aborted.error().code(), ErrorCode::kAborted);
  auto v2 = other->Put("k", "2");
  ASSERT_TRUE(v2) << v2.error().ToString();
  ExpectValue(*bank_, "k", "2", *v2);  // not the snapshot of the aborted commit
  auto v3 = bank_->Put("k", "3", *v2);
  ASSERT_TRUE(v3) << v3.error().ToString();
  ExpectValue(*other, "k", "3", *v3);
  // The same after an aborted check op and an aborted delete.
  std::vector<Op> check = {Op::Check("k", *v1), Op::Put("x", "x")};
  ASSERT_FALSE(bank_->Commit(check));
  auto v4 = other->Put("k", "4");
  ASSERT_TRUE(v4);
  ExpectValue(*bank_, "k", "4", *v4);
  ASSERT_EQ(bank_->Delete("k", *v1).code(), ErrorCode::kAborted);
  auto v5 = other->Put("k", "5");
  ASSERT_TRUE(v5);
  Status deleted = bank_->Delete("k", *v5);
  EXPECT_TRUE(deleted.ok()) << deleted.ToString();
  ExpectAbsent(*other, "k");
}

// A child process that commits and is then killed without closing its
// handle: what it committed is there for the next process.
TEST_P(BankConformanceTest, CommitsSurviveAWriterKilledWithoutClosing) {
  if (InChild()) {
    const int ready = ChildFd(0);
    auto b = GetParam().open(location_);
    if (!b) ::_exit(10);
    for (int i = 0; i < 20; ++i) {
      if (!(*b)->Put("killed/" + std::to_string(i), std::to_string(i))) ::_exit(11);
    }
    std::vector<Op> ops = {Op::Put("killed/batch", "x"), Op::Delete("killed/0")};
    if (!(*b)->Commit(ops)) ::_exit(12);
    char c = 1;
    if (::write(ready, &c, 1) != 1) ::_exit(13);
    ::pause();  // killed here, handle open
    ::_exit(14);
  }
  bank_.reset();  // the child writes alone
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t pid = SpawnChild({ready[1]});
  ASSERT_GE(pid, 0);
  ::close(ready[1]);
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1) << "the child failed before committing";
  ::close(ready[0]);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status));
  bank_ = Open();
  ASSERT_NE(bank_, nullptr);
  ExpectAbsent(*bank_, "killed/0");
  for (int i = 1; i < 20; ++i) ExpectValue(*bank_, "killed/" + std::to_string(i), std::to_string(i));
  ExpectValue(*bank_, "killed/batch", "x");
  auto list = bank_->List("killed/");
  ASSERT_TRUE(list);
  EXPECT_EQ(list->size(), 20u);
}

// --- Contention: no lost update ---------------------------------------------------------

constexpr int kIncrements = 200;

TEST_P(BankConformanceTest, ConcurrentThreadsOnOneHandleLoseNoUpdate) {
  constexpr int kThreads = 4;
  std::atomic<uint64_t> retries{0};
  std::vector<std::thread> threads;
  std::vector<Status> results(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      uint64_t r = 0;
      for (int i = 0; i < kIncrements / 2; ++i) {
        Status s = CasIncrement(*bank_, "counter", &r);
        if (!s.ok()) {
          results[t] = s;
          break;
        }
      }
      retries += r;
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_TRUE(results[t].ok()) << t << ": " << results[t].ToString();
  ExpectValue(*bank_, "counter", std::to_string(kThreads * (kIncrements / 2)));
  std::cout << "[          ] " << retries.load() << " retried compare-and-sets\n";
}

TEST_P(BankConformanceTest, ConcurrentHandlesLoseNoUpdate) {
  constexpr int kThreads = 4;
  std::vector<std::unique_ptr<Bank>> handles;
  for (int t = 0; t < kThreads; ++t) {
    handles.push_back(Open());
    ASSERT_NE(handles.back(), nullptr);
  }
  std::atomic<uint64_t> retries{0};
  std::vector<std::thread> threads;
  std::vector<Status> results(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      uint64_t r = 0;
      for (int i = 0; i < kIncrements / 2; ++i) {
        Status s = CasIncrement(*handles[t], "counter", &r);
        if (!s.ok()) {
          results[t] = s;
          break;
        }
      }
      retries += r;
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_TRUE(results[t].ok()) << t << ": " << results[t].ToString();
  ExpectValue(*bank_, "counter", std::to_string(kThreads * (kIncrements / 2)));
  std::cout << "[          ] " << retries.load() << " retried compare-and-sets\n";
}

TEST_P(BankConformanceTest, TwoProcessesLoseNoUpdate) {
  // A child process and this one each add kIncrements to one counter by
  // compare-and-set on the same bank; a lost update shows as a total < 2N.
  if (InChild()) {
    const int ready = ChildFd(0);
    const int go = ChildFd(1);
    int code = 0;
    {
      auto b = GetParam().open(location_);
      char c = 1;
      if (::write(ready, &c, 1) != 1) ::_exit(20);
      if (::read(go, &c, 1) != 1) ::_exit(21);  // start together
      if (!b) ::_exit(22);
      uint64_t retries = 0;
      for (int i = 0; i < kIncrements && code == 0; ++i) {
        if (!CasIncrement(**b, "counter", &retries).ok()) code = 23;
      }
    }  // closes the child's handle
    ::_exit(code);
  }
  bank_.reset();
  int go[2];
  int ready[2];
  ASSERT_EQ(::pipe(go), 0);
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t pid = SpawnChild({ready[1], go[0]});
  ASSERT_GE(pid, 0);
  ::close(go[0]);
  ::close(ready[1]);
  bank_ = Open();
  ASSERT_NE(bank_, nullptr);
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ASSERT_EQ(::write(go[1], &c, 1), 1);
  uint64_t retries = 0;
  Status failed;
  for (int i = 0; i < kIncrements; ++i) {
    failed = CasIncrement(*bank_, "counter", &retries);
    if (!failed.ok()) break;
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ::close(go[1]);
  ::close(ready[0]);
  EXPECT_TRUE(failed.ok()) << failed.ToString();
  ASSERT_TRUE(WIFEXITED(status)) << "child status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the child's increments failed";
  ExpectValue(*bank_, "counter", std::to_string(2 * kIncrements));
  std::cout << "[          ] parent retried " << retries << " compare-and-sets\n";
}

}  // namespace
}  // namespace floe::bank::conformance
