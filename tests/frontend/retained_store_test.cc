// The MQTT front end's retained writes (src/frontend/mqtt/retained.h) over a
// real broker core: a real SQLite bank and the MQTT stream served by this
// node. The later stream seq wins whatever order the writes finish in, a
// delete included; a record of another topic is kept; only the node serving
// the stream writes; Broker::ListRecords lists under its prefix only.
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "broker/broker.h"
#include "frontend/mqtt/retained.h"
#include "support/temp_dir.h"
#include "../broker/core_support.h"

namespace floe::frontend::mqtt {
namespace {

using broker::Await;
using broker::Outcome;

class RetainedStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    broker::BrokerOptions o;
    o.node_id = "retained-test";
    o.data_dir = dir_.path();
    auto b = broker::Broker::Open(o);
    ASSERT_TRUE(b.has_value()) << b.error().ToString();
    broker_ = std::move(*b);
    ASSERT_TRUE(broker_->StartCluster("127.0.0.1:1").ok());
    auto created = Await<Outcome<void>>([&](auto done) { broker_->CreateStream("mqtt", {}, done); });
    ASSERT_TRUE(created) << created.error().message;
    store_ = std::make_shared<RetainedStore>(broker_.get(), "mqtt");
  }
  void TearDown() override {
    store_.reset();
    broker_->BeginStop();
    broker_->Flush();
    broker_->Finish();
  }
  Outcome<void> Commit(RetainedStore& store, const std::string& topic, uint64_t seq, const std::string& payload) {
    return Await<Outcome<void>>([&](auto done) { store.Commit(topic, seq, "", payload, done); });
  }
  std::optional<RetainedRecord> Held(const std::string& topic) {
    auto v = Await<Outcome<std::optional<std::string>>>(
        [&](auto done) { broker_->ReadRecord(RetainedKey(topic), done); });
    EXPECT_TRUE(v);
    if (!v || !*v) return std::nullopt;
    auto r = DecodeRetainedRecord(**v);
    EXPECT_TRUE(r) << r.error().ToString();
    return r ? std::optional<RetainedRecord>(*r) : std::nullopt;
  }

  test::TempDir dir_;
  std::unique_ptr<broker::Broker> broker_;
  std::shared_ptr<RetainedStore> store_;
};

TEST_F(RetainedStoreTest, TheLaterSeqWinsWhenItsWriteFinishesFirst) {
  store_->Begin();  // seq 5 ...
  store_->Begin();  // ... and seq 7 are both being published
  ASSERT_TRUE(Commit(*store_, "t", 7, "new"));
  ASSERT_TRUE(Commit(*store_, "t", 5, "old"));  // its write finishes last
  auto held = Held("t");
  ASSERT_TRUE(held);
  EXPECT_EQ(held->seq, 7u);
  EXPECT_EQ(held->payload, "new");
}

TEST_F(RetainedStoreTest, ALaterDeleteWinsOverAnEarlierPut) {
  store_->Begin();
  ASSERT_TRUE(Commit(*store_, "d", 3, "kept"));
  ASSERT_TRUE(Held("d"));
  store_->Begin();
  store_->Begin();
  ASSERT_TRUE(Commit(*store_, "d", 9, ""));  // [MQTT-3.3.1-6]
  EXPECT_FALSE(Held("d"));
  ASSERT_TRUE(Commit(*store_, "d", 8, "stale"));
  EXPECT_FALSE(Held("d"));
  store_->Begin();
  ASSERT_TRUE(Commit(*store_, "d", 10, "again"));  // nothing under way any more: a fresh start
  ASSERT_TRUE(Held("d"));
  EXPECT_EQ(Held("d")->payload, "again");
}

TEST_F(RetainedStoreTest, AnotherTopicsRecordUnderTheSameKeyIsKept) {
  // What a hash collision looks like: topic "c"'s key holds topic "other".
  const std::string foreign = EncodeRetainedRecord({.seq = 1, .topic = "other", .headers = "", .payload = "theirs"});
  ASSERT_TRUE(Await<Outcome<void>>([&](auto done) { broker_->WriteRecord(RetainedKey("c"), foreign, done); }));
  store_->Begin();
  auto r = Commit(*store_, "c", 2, "mine");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, broker::Code::kInvalidArgument);
  store_->Begin();
  ASSERT_FALSE(Commit(*store_, "c", 3, ""));  // nor deleted
  auto v = Await<Outcome<std::optional<std::string>>>([&](auto done) { broker_->ReadRecord(RetainedKey("c"), done); });
  ASSERT_TRUE(v && *v);
  EXPECT_EQ(**v, foreign);
}

TEST_F(RetainedStoreTest, OnlyTheNodeServingTheStreamWrites) {
  auto elsewhere = std::make_shared<RetainedStore>(broker_.get(), "not-served-here");
  elsewhere->Begin();
  auto r = Commit(*elsewhere, "x", 1, "p");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, broker::Code::kNotOwner);
  EXPECT_FALSE(Held("x"));
}

TEST_F(RetainedStoreTest, ListRecordsAndFindRetained) {
  for (auto [topic, seq] : {std::pair{"a/1", 1}, {"a/2", 2}, {"b/1", 3}, {"$SYS/x", 4}}) {
    store_->Begin();
    ASSERT_TRUE(Commit(*store_, topic, seq, "p"));
  }
  // A session record beside them ("mqtt/..."): not listed under "mqtt-retained/".
  ASSERT_TRUE(Await<Outcome<void>>([&](auto done) { broker_->WriteRecord("mqtt/0123456789abcdef", "s", done); }));
  auto all = Await<Outcome<std::vector<broker::Record>>>(
      [&](auto done) { broker_->ListRecords(std::string(kRetainedPrefix), done); });
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 4u);
  for (const auto& r : *all) EXPECT_EQ(r.key.rfind("mqtt-retained/", 0), 0u) << r.key;
  auto found = Await<Outcome<std::vector<RetainedMatch>>>(
      [&](auto done) { FindRetained(broker_.get(), {"#", "a/+", "b/1", "$SYS/#"}, done); });
  ASSERT_TRUE(found);
  std::multiset<std::pair<size_t, std::string>> got;
  for (const auto& m : *found) got.insert({m.filter, m.record->topic});
  const std::multiset<std::pair<size_t, std::string>> want{{0, "a/1"}, {0, "a/2"}, {0, "b/1"}, {1, "a/1"},
                                                           {1, "a/2"}, {2, "b/1"}, {3, "$SYS/x"}};
  EXPECT_EQ(got, want);
  auto exact = Await<Outcome<std::vector<RetainedMatch>>>(
      [&](auto done) { FindRetained(broker_.get(), {"a/2", "nothing/here"}, done); });
  ASSERT_TRUE(exact);
  ASSERT_EQ(exact->size(), 1u);
  EXPECT_EQ((*exact)[0].record->topic, "a/2");
}

}  // namespace
}  // namespace floe::frontend::mqtt
