// Operator-grade logs of the real daemons: one line per event, leveled, prefixed with the node
// and (zmesh-directory) its CURRENT Raft role and term, valid JSON with --log-format json, and
// never a message payload.
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <zmq.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/support/cluster_process.h"
#include "tests/support/directory_process.h"
#include "tests/support/proxy_process.h"
#include "tests/support/subprocess.h"
#include "zmesh/transport.h"

namespace zmesh {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;
using testing::BinPath;
using testing::ClusterProcess;
using testing::DirectoryProcess;
using testing::Eventually;
using testing::ProxyProcess;
using testing::Subprocess;
using testing::TailFile;
using testing::TempDir;

std::vector<std::string> Lines(const std::string& path) {
  absl::StatusOr<std::string> content = testing::ReadFile(path);
  EXPECT_TRUE(content.ok()) << path << ": " << content.status();
  return absl::StrSplit(content.value_or(""), '\n', absl::SkipEmpty());
}

// One JSON log line, checked for the fields every line carries.
struct JsonLine {
  std::string level;
  std::string node;
  std::string role;  // "" when absent
  double term = -1;  // -1 when absent
  std::string msg;
};

// Parses `line` (a failed expectation when it is not a JSON object with time, level, node, msg).
JsonLine ParseJsonLine(const std::string& line) {
  JsonLine out;
  Struct parsed;
  auto status = google::protobuf::util::JsonStringToMessage(line, &parsed);
  EXPECT_TRUE(status.ok()) << "not JSON: " << line;
  if (!status.ok()) return out;
  const auto& fields = parsed.fields();
  for (const char* key : {"time", "level", "node", "msg"}) {
    EXPECT_TRUE(fields.count(key) && fields.at(key).kind_case() == Value::kStringValue)
        << "no string \"" << key << "\" in " << line;
  }
  if (fields.count("level")) out.level = fields.at("level").string_value();
  if (fields.count("node")) out.node = fields.at("node").string_value();
  if (fields.count("msg")) out.msg = fields.at("msg").string_value();
  if (fields.count("role")) out.role = fields.at("role").string_value();
  if (fields.count("term")) {
    EXPECT_EQ(fields.at("term").kind_case(), Value::kNumberValue) << line;
    out.term = fields.at("term").number_value();
  }
  EXPECT_TRUE(std::set<std::string>({"debug", "info", "warning", "error"}).count(out.level))
      << line;
  return out;
}

TEST(LogsTest, DirectoryJsonLinesCarryTheCurrentRoleAndTermAcrossAnElection) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<ClusterProcess>> cluster =
      ClusterProcess::Start(dir.path(), {.replicas = 3, .extra_args = {"--log-format", "json"}});
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  absl::StatusOr<uint64_t> first = (*cluster)->WaitForLeader();
  ASSERT_TRUE(first.ok()) << first.status();
  (*cluster)->Kill(*first);
  absl::StatusOr<uint64_t> second = (*cluster)->WaitForLeader();
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_NE(*second, *first);
  // The new leader logs its election ("raft: leader in term T, ...") once it knows.
  const std::string path = (*cluster)->log_path(*second);
  ASSERT_TRUE(Eventually(
      [&] { return absl::StrContains(testing::ReadFile(path).value_or(""), "raft: leader"); },
      10000))
      << TailFile(path);

  const std::set<std::string> roles = {"leader", "follower", "candidate", "unavailable"};
  for (uint64_t id : (*cluster)->ids()) {
    for (const std::string& line : Lines((*cluster)->log_path(id))) {
      const JsonLine parsed = ParseJsonLine(line);
      EXPECT_EQ(parsed.node, absl::StrCat("directory-", id)) << line;
      EXPECT_TRUE(roles.count(parsed.role)) << "no Raft role in " << line;
      EXPECT_GE(parsed.term, 0) << "no Raft term in " << line;
    }
  }

  // On the new leader: followed the first leader in some term, then led in a later one, and
  // every line says the role and term the replica had when it was written.
  double follower_term = -1;
  double leader_term = -1;
  for (const std::string& line : Lines(path)) {
    const JsonLine parsed = ParseJsonLine(line);
    if (parsed.role == "follower" && follower_term < 0) follower_term = parsed.term;
    if (parsed.role == "leader" && leader_term < 0) leader_term = parsed.term;
    std::vector<std::string> words = absl::StrSplit(parsed.msg, ' ');
    // "raft: <role> in term <T>, leader <id>"
    if (words.size() >= 5 && words[0] == "raft:" && words[2] == "in" && words[3] == "term") {
      EXPECT_EQ(parsed.role, words[1]) << "prefix not updated before the line: " << line;
      double term = 0;
      ASSERT_TRUE(absl::SimpleAtod(absl::StripSuffix(words[4], ","), &term)) << line;
      EXPECT_EQ(parsed.term, term) << line;
    }
  }
  EXPECT_GE(follower_term, 1) << TailFile(path);
  EXPECT_GT(leader_term, follower_term) << TailFile(path);
}

TEST(LogsTest, DirectoryTextLinesArePrefixedWithNodeRoleAndTerm) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<DirectoryProcess>> directory =
      DirectoryProcess::Start(absl::StrCat(dir.path(), "/d"), {"--id", "7"});
  ASSERT_TRUE(directory.ok()) << directory.status();
  ASSERT_TRUE((*directory)->Stop().ok());
  // "<time> <level> [directory-7 <role> term=<T>] <message>"
  const std::set<std::string> roles = {"leader", "follower", "candidate", "unavailable"};
  const std::vector<std::string> lines = Lines((*directory)->log_path());
  ASSERT_GE(lines.size(), 3u);
  for (const std::string& line : lines) {
    std::vector<std::string> words = absl::StrSplit(line, absl::MaxSplits(' ', 5));
    ASSERT_EQ(words.size(), 6u) << line;
    absl::Time time;
    std::string error;
    EXPECT_TRUE(absl::ParseTime("%Y-%m-%dT%H:%M:%E3SZ", words[0], &time, &error))
        << error << ": " << line;
    EXPECT_TRUE(words[1] == "D" || words[1] == "I" || words[1] == "W" || words[1] == "E") << line;
    EXPECT_EQ(words[2], "[directory-7") << line;
    EXPECT_TRUE(roles.count(words[3])) << line;
    absl::string_view term = words[4];
    int64_t value = 0;
    EXPECT_TRUE(absl::ConsumePrefix(&term, "term=") && absl::ConsumeSuffix(&term, "]") &&
                absl::SimpleAtoi(term, &value))
        << line;
    EXPECT_FALSE(words[5].empty()) << line;
  }
}

TEST(LogsTest, ProxyJsonLinesNeverCarryPayloads) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<DirectoryProcess>> directory =
      DirectoryProcess::Start(absl::StrCat(dir.path(), "/d"));
  ASSERT_TRUE(directory.ok()) << directory.status();
  absl::StatusOr<std::unique_ptr<ProxyProcess>> proxy =
      ProxyProcess::Start({.directory = (*directory)->address(),
                           .node_name = "node-1",
                           .ipc_dir = absl::StrCat(dir.path(), "/n1"),
                           .extra_args = {"--log-format", "json", "--log-level", "debug"}});
  ASSERT_TRUE(proxy.ok()) << proxy.status();

  const std::string out = absl::StrCat(dir.path(), "/server.out");
  absl::StatusOr<std::unique_ptr<Subprocess>> server =
      Subprocess::Start({BinPath("zmeshctl"), "serve", "logged", "--server", "s", "--echo",
                         "--ipc-dir", (*proxy)->ipc_dir()},
                        out, out);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE(Eventually(
      [&] { return absl::StrContains(testing::ReadFile(out).value_or(""), "ready:"); }, 15000))
      << TailFile(out);
  const std::string marker = "SECRET-PAYLOAD-7f3a";
  absl::StatusOr<std::unique_ptr<Transport>> client =
      Transport::Create({.ipc_dir = (*proxy)->ipc_dir()});
  ASSERT_TRUE(client.ok()) << client.status();
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<CallResult> result =
        (*client)->Call({.topic = "logged", .server = "s"}, absl::StrCat(marker, " ", i));
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_TRUE(absl::StrContains(result->payload, marker));
  }
  // Bad input the proxy refuses and logs (a header that does not parse, too many frames), each
  // carrying the marker in its payload.
  zmq::context_t context(1);
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  socket.set(zmq::sockopt::linger, 0);
  socket.connect(absl::StrCat("tcp://127.0.0.1:", (*proxy)->call_port()));
  socket.send(zmq::buffer(std::string("not a header")), zmq::send_flags::sndmore);
  socket.send(zmq::buffer(marker), zmq::send_flags::none);
  socket.send(zmq::buffer(marker), zmq::send_flags::sndmore);
  socket.send(zmq::buffer(marker), zmq::send_flags::sndmore);
  socket.send(zmq::buffer(marker), zmq::send_flags::none);
  ASSERT_TRUE(Eventually(
      [&] {
        return absl::StrContains(testing::ReadFile((*proxy)->log_path()).value_or(""),
                                 "bad_frame_count");
      },
      10000))
      << TailFile((*proxy)->log_path());
  client->reset();
  (*server)->Signal(SIGTERM);
  (void)(*server)->Wait(10000);
  ASSERT_TRUE((*proxy)->Stop().ok());

  const std::vector<std::string> lines = Lines((*proxy)->log_path());
  ASSERT_GE(lines.size(), 3u);
  bool saw_bad_header = false;
  for (const std::string& line : lines) {
    EXPECT_FALSE(absl::StrContains(line, marker)) << "payload in the log: " << line;
    const JsonLine parsed = ParseJsonLine(line);
    EXPECT_EQ(parsed.node, "proxy-node-1") << line;
    EXPECT_EQ(parsed.role, "") << "a proxy has no Raft role: " << line;
    saw_bad_header = saw_bad_header || absl::StrContains(parsed.msg, "bad_header");
  }
  EXPECT_TRUE(saw_bad_header) << "the refused message was not logged at all";
}

}  // namespace
}  // namespace zmesh
