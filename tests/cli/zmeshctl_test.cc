// zmeshctl against a real zmesh-directory: every command as an operator or a script uses it,
// checking output (table and JSON), exit codes and error lines.
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/support/cluster_process.h"
#include "tests/support/cluster_test.h"
#include "tests/support/directory_process.h"
#include "tests/support/subprocess.h"
#include "zmesh/directory/v1/cluster.pb.h"
#include "zmesh/directory/v1/directory.pb.h"
#include "zmesh/directory/v1/lease.pb.h"

namespace zmesh::testing {
namespace {

namespace dv1 = ::zmesh::directory::v1;
using ::testing::HasSubstr;
using ::testing::Not;

// Parses zmeshctl's JSON into a message; unknown fields are an error, so a misnamed field in
// the output fails the test.
template <typename Message>
Message ParseJson(const std::string& json) {
  Message message;
  auto status = google::protobuf::util::JsonStringToMessage(json, &message);
  EXPECT_TRUE(status.ok()) << status.ToString() << " in: " << json;
  return message;
}

std::vector<std::string> Lines(absl::string_view text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

class ZmeshctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<DirectoryProcess>> directory =
        DirectoryProcess::Start(dir_.path() + "/data");
    ASSERT_TRUE(directory.ok()) << directory.status();
    directory_ = *std::move(directory);
  }

  // Runs zmeshctl against the test's directory.
  CommandResult Ctl(std::vector<std::string> args) {
    return CtlAt(directory_->address(), std::move(args));
  }

  CommandResult CtlAt(const std::string& directory, std::vector<std::string> args) {
    std::vector<std::string> argv = {BinPath("zmeshctl"), "--directory", directory};
    argv.insert(argv.end(), args.begin(), args.end());
    absl::StatusOr<CommandResult> result = RunCommand(argv, 30000);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : CommandResult{};
  }

  // Runs zmeshctl and expects success.
  std::string CtlOk(const std::vector<std::string>& args) {
    return CtlOkAt(directory_->address(), args);
  }

  std::string CtlOkAt(const std::string& directory, const std::vector<std::string>& args) {
    CommandResult result = CtlAt(directory, args);
    EXPECT_EQ(result.exit_code, 0) << "zmeshctl " << absl::StrJoin(args, " ")
                                   << "\nstdout: " << result.out << "\nstderr: " << result.err;
    return result.out;
  }

  // Registers node-1 (default ports) and node-2 (call port 7001) with three registrations.
  void RegisterSample() {
    CtlOk({"nodes", "register", "node-1", "--host", "10.0.0.1"});
    CtlOk({"nodes", "register", "node-2", "--host", "10.0.0.2", "--call-port", "7001"});
    CtlOk({"topics", "register", "compute", "--node", "node-1", "--server", "compute-1"});
    CtlOk({"topics", "register", "compute", "--node", "node-2", "--server", "host@backend"});
    CtlOk({"topics", "register", "notifications.info", "--node", "node-2", "--kind", "notify",
           "--pool", "p1"});
  }

  TempDir dir_;
  std::unique_ptr<DirectoryProcess> directory_;
};

TEST_F(ZmeshctlTest, RegisterPrintsWhatWasRegisteredAndIsIdempotent) {
  EXPECT_THAT(CtlOk({"nodes", "register", "node-1", "--host", "10.0.0.1"}),
              HasSubstr("node \"node-1\" registered"));
  EXPECT_THAT(CtlOk({"topics", "register", "compute", "--node", "node-1", "--server", "c-1"}),
              HasSubstr("registered openstack/compute server=c-1 kind=rpc node=node-1"));
  EXPECT_THAT(CtlOk({"topics", "register", "compute", "--node", "node-1", "--server", "c-1"}),
              HasSubstr("already registered openstack/compute"));

  dv1::RegisterResponse again = ParseJson<dv1::RegisterResponse>(CtlOk(
      {"topics", "register", "compute", "--node", "node-1", "--server", "c-1", "-o", "json"}));
  EXPECT_FALSE(again.created());
  EXPECT_EQ(again.registration().server(), "c-1");
}

TEST_F(ZmeshctlTest, RegisterNodeUsesDefaultPortsUnlessGiven) {
  dv1::RegisterNodeResponse registered = ParseJson<dv1::RegisterNodeResponse>(
      CtlOk({"-o", "json", "nodes", "register", "n", "--host", "h", "--notify-port", "6003"}));
  EXPECT_EQ(registered.node().name(), "n");
  EXPECT_EQ(registered.node().call_port(), 9501u);
  EXPECT_EQ(registered.node().fanout_port(), 9502u);
  EXPECT_EQ(registered.node().notify_port(), 6003u);
  EXPECT_EQ(registered.node().cast_port(), 9504u);
  EXPECT_EQ(registered.node().lease_id(), 0);
}

TEST_F(ZmeshctlTest, NodesListAsAlignedTable) {
  RegisterSample();
  std::vector<std::string> lines = Lines(CtlOk({"nodes", "list"}));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_TRUE(absl::StartsWith(lines[0], "NAME ")) << lines[0];
  // Columns line up under their headers.
  size_t host_column = lines[0].find("HOST");
  size_t call_column = lines[0].find("CALL");
  ASSERT_NE(host_column, std::string::npos);
  EXPECT_EQ(lines[1].find("10.0.0.1"), host_column) << lines[1];
  EXPECT_EQ(lines[2].find("10.0.0.2"), host_column) << lines[2];
  EXPECT_EQ(lines[2].find("7001"), call_column) << lines[2];
  EXPECT_TRUE(absl::StartsWith(lines[1], "node-1 "));
}

TEST_F(ZmeshctlTest, NodesListAndShowAsJson) {
  RegisterSample();
  dv1::ListNodesResponse list =
      ParseJson<dv1::ListNodesResponse>(CtlOk({"nodes", "list", "-o", "json"}));
  ASSERT_EQ(list.nodes_size(), 2);
  EXPECT_EQ(list.nodes(0).name(), "node-1");
  EXPECT_EQ(list.nodes(1).host(), "10.0.0.2");
  EXPECT_EQ(list.nodes(1).call_port(), 7001u);
  EXPECT_GT(list.revision(), 0);

  dv1::GetNodeResponse node =
      ParseJson<dv1::GetNodeResponse>(CtlOk({"nodes", "show", "node-2", "-o", "json"}));
  EXPECT_EQ(node.node().name(), "node-2");
  EXPECT_EQ(node.registrations_size(), 2);

  std::string table = CtlOk({"nodes", "show", "node-2"});
  EXPECT_THAT(table, HasSubstr("Host:"));
  EXPECT_THAT(table, HasSubstr("call=7001"));
  EXPECT_THAT(table, HasSubstr("notifications.info"));
  EXPECT_THAT(table, HasSubstr("host@backend"));
}

TEST_F(ZmeshctlTest, TopicsListAsTableAndJson) {
  RegisterSample();
  dv1::ListTopicsResponse topics =
      ParseJson<dv1::ListTopicsResponse>(CtlOk({"topics", "list", "-o", "json"}));
  ASSERT_EQ(topics.topics_size(), 2);
  EXPECT_EQ(topics.topics(0).topic(), "compute");
  EXPECT_EQ(topics.topics(0).exchange(), "openstack");
  EXPECT_EQ(topics.topics(0).rpc_servers(), 2);
  EXPECT_EQ(topics.topics(0).nodes(), 2);
  EXPECT_EQ(topics.topics(1).topic(), "notifications.info");
  EXPECT_EQ(topics.topics(1).notify_listeners(), 1);

  std::vector<std::string> lines = Lines(CtlOk({"topics", "list"}));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_THAT(lines[0], HasSubstr("TOPIC"));
  EXPECT_THAT(lines[1], HasSubstr("compute"));

  dv1::ListTopicsResponse other = ParseJson<dv1::ListTopicsResponse>(
      CtlOk({"topics", "list", "--exchange", "other", "-o", "json"}));
  EXPECT_EQ(other.topics_size(), 0);
}

TEST_F(ZmeshctlTest, TopicsShowListsEachServerWithItsNode) {
  RegisterSample();
  std::string table = CtlOk({"topics", "show", "compute"});
  std::vector<std::string> lines = Lines(table);
  ASSERT_EQ(lines.size(), 3u) << table;
  EXPECT_THAT(lines[1], HasSubstr("compute-1"));
  EXPECT_THAT(lines[1], HasSubstr("node-1"));
  EXPECT_THAT(lines[1], HasSubstr("10.0.0.1"));
  EXPECT_THAT(lines[2], HasSubstr("host@backend"));
  EXPECT_THAT(lines[2], HasSubstr("7001"));

  dv1::LookupResponse lookup =
      ParseJson<dv1::LookupResponse>(CtlOk({"topics", "show", "compute", "-o", "json"}));
  ASSERT_EQ(lookup.endpoints_size(), 2);
  EXPECT_EQ(lookup.endpoints(0).registration().server(), "compute-1");
  EXPECT_EQ(lookup.endpoints(0).node().host(), "10.0.0.1");
  EXPECT_EQ(lookup.endpoints(1).node().call_port(), 7001u);

  CommandResult none = Ctl({"topics", "show", "compute", "--exchange", "other"});
  EXPECT_EQ(none.exit_code, 0);
  EXPECT_EQ(none.out, "");
  EXPECT_THAT(none.err, HasSubstr("No registrations for other/compute"));
}

TEST_F(ZmeshctlTest, UnregisterAndRemove) {
  RegisterSample();
  EXPECT_THAT(
      CtlOk({"topics", "unregister", "compute", "--node", "node-1", "--server", "compute-1"}),
      HasSubstr("unregistered openstack/compute server=compute-1 kind=rpc node=node-1"));
  dv1::LookupResponse lookup =
      ParseJson<dv1::LookupResponse>(CtlOk({"topics", "show", "compute", "-o", "json"}));
  ASSERT_EQ(lookup.endpoints_size(), 1);
  EXPECT_EQ(lookup.endpoints(0).registration().node(), "node-2");

  EXPECT_THAT(CtlOk({"nodes", "remove", "node-2"}),
              HasSubstr("node \"node-2\" removed with 2 registrations"));
  dv1::ListNodesResponse list =
      ParseJson<dv1::ListNodesResponse>(CtlOk({"nodes", "list", "-o", "json"}));
  ASSERT_EQ(list.nodes_size(), 1);
  EXPECT_EQ(list.nodes(0).name(), "node-1");
}

TEST_F(ZmeshctlTest, DrainAndUndrain) {
  RegisterSample();
  EXPECT_THAT(CtlOk({"nodes", "drain", "node-1"}), HasSubstr("node \"node-1\" drained"));
  EXPECT_TRUE(ParseJson<dv1::GetNodeResponse>(CtlOk({"nodes", "show", "node-1", "-o", "json"}))
                  .node()
                  .draining());
  std::vector<std::string> lines = Lines(CtlOk({"nodes", "list"}));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_THAT(lines[1], HasSubstr("draining"));
  EXPECT_THAT(lines[2], Not(HasSubstr("draining")));
  EXPECT_THAT(CtlOk({"topics", "show", "compute"}), HasSubstr("draining"));

  EXPECT_THAT(CtlOk({"nodes", "undrain", "node-1"}), HasSubstr("node \"node-1\" undrained"));
  EXPECT_FALSE(ParseJson<dv1::GetNodeResponse>(CtlOk({"nodes", "show", "node-1", "-o", "json"}))
                   .node()
                   .draining());
}

TEST_F(ZmeshctlTest, ServerErrorsAreOneLineWithExitCodeOne) {
  RegisterSample();
  CommandResult unknown = Ctl({"nodes", "show", "nope"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_EQ(unknown.out, "");
  EXPECT_THAT(unknown.err, ::testing::StartsWith("zmeshctl: NOT_FOUND: "));
  EXPECT_THAT(unknown.err, HasSubstr("nope"));
  EXPECT_EQ(Lines(unknown.err).size(), 1u) << unknown.err;

  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"nodes", "drain", "nope"},
           {"nodes", "remove", "nope"},
           {"topics", "register", "t", "--node", "nope", "--server", "s"},
           {"topics", "unregister", "compute", "--node", "node-1", "--server", "other"},
           {"leases", "revoke", "987654"}}) {
    CommandResult result = Ctl(args);
    EXPECT_EQ(result.exit_code, 1) << absl::StrJoin(args, " ") << ": " << result.err;
    EXPECT_THAT(result.err, ::testing::StartsWith("zmeshctl: NOT_FOUND: "));
    EXPECT_EQ(Lines(result.err).size(), 1u) << result.err;
  }
}

TEST_F(ZmeshctlTest, InvalidNameIsReportedWithTheField) {
  RegisterSample();
  CommandResult result =
      Ctl({"topics", "register", "bad\x01topic", "--node", "node-1", "--server", "s"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.err, ::testing::StartsWith("zmeshctl: INVALID_ARGUMENT: "));
  EXPECT_THAT(result.err, HasSubstr("topic"));
  EXPECT_EQ(Lines(result.err).size(), 1u) << result.err;

  result = Ctl({"nodes", "register", "bad\nname", "--host", "h"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.err, ::testing::StartsWith("zmeshctl: INVALID_ARGUMENT: "));
  EXPECT_THAT(result.err, HasSubstr("name"));
  EXPECT_EQ(Lines(result.err).size(), 1u) << result.err;
}

TEST_F(ZmeshctlTest, UsageErrorsAreOneLineWithExitCodeTwo) {
  struct Case {
    std::vector<std::string> args;
    std::string error;
  };
  for (const Case& c : std::vector<Case>{
           {{"nodes", "list", "--bogus"}, "zmeshctl: nodes list: unknown flag --bogus\n"},
           {{"nodes", "register", "n"}, "zmeshctl: nodes register: missing required flag --host\n"},
           {{"nodes", "register", "--host", "h"},
            "zmeshctl: nodes register: missing argument NODE\n"},
           {{"nodes", "register", "n", "--host", "h", "--call-port", "x"},
            "zmeshctl: nodes register: invalid value \"x\" for --call-port: expected an integer\n"},
           {{"nodes", "show", "a", "b"}, "zmeshctl: nodes show: unexpected argument \"b\"\n"},
           {{"nodes"},
            "zmeshctl: nodes: missing subcommand (one of list, show, register, drain, "
            "undrain, remove)\n"},
           {{"topics", "register", "t", "--node", "n", "--pool", "p"},
            "zmeshctl: topics register: --pool needs --kind notify\n"},
           {{"leases", "show", "abc"},
            "zmeshctl: leases show: invalid lease id \"abc\": expected a positive integer\n"},
           {{"members", "add", "x", "127.0.0.1:1"},
            "zmeshctl: members add: invalid replica id \"x\": expected a positive integer\n"},
           {{"members", "add", "4"}, "zmeshctl: members add: missing argument RAFT_ADDR\n"},
           {{"leader", "transfer", "1", "2"},
            "zmeshctl: leader transfer: unexpected argument \"2\"\n"},
           {{"nodes", "list", "--consistency", "weak"},
            "zmeshctl: nodes list: invalid value \"weak\" for --consistency: expected "
            "linearizable, stale\n"},
           {{"nodes", "list", "-o", "yaml"},
            "zmeshctl: nodes list: invalid value \"yaml\" for --output: expected table, json\n"},
           // Before the command words, a global flag's error has no command to name.
           {{"-o", "yaml", "nodes", "list"},
            "zmeshctl: invalid value \"yaml\" for --output: expected table, json\n"},
       }) {
    CommandResult result = Ctl(c.args);
    EXPECT_EQ(result.exit_code, 2) << absl::StrJoin(c.args, " ");
    EXPECT_EQ(result.err, c.error);
    EXPECT_EQ(result.out, "");
  }
}

TEST_F(ZmeshctlTest, DirectoryAddressErrors) {
  absl::StatusOr<CommandResult> bad =
      RunCommand({BinPath("zmeshctl"), "--directory", "nocolon", "nodes", "list"});
  ASSERT_TRUE(bad.ok()) << bad.status();
  EXPECT_EQ(bad->exit_code, 2);
  EXPECT_THAT(bad->err, HasSubstr("invalid directory address \"nocolon\""));

  // Port 1 on loopback: nothing listens there.
  absl::StatusOr<CommandResult> down =
      RunCommand({BinPath("zmeshctl"), "--directory", "127.0.0.1:1", "nodes", "list"});
  ASSERT_TRUE(down.ok()) << down.status();
  EXPECT_EQ(down->exit_code, 1);
  EXPECT_THAT(down->err, ::testing::StartsWith("zmeshctl: UNAVAILABLE: "));
  EXPECT_THAT(down->err, HasSubstr("127.0.0.1:1"));
}

TEST_F(ZmeshctlTest, FailsOverToTheReplicaThatAnswers) {
  CtlOk({"nodes", "register", "n", "--host", "h"});
  absl::StatusOr<CommandResult> result =
      RunCommand({BinPath("zmeshctl"), "--directory", "127.0.0.1:1," + directory_->address(),
                  "nodes", "list", "-o", "json"});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit_code, 0) << result->err;
  EXPECT_EQ(ParseJson<dv1::ListNodesResponse>(result->out).nodes_size(), 1);
}

TEST_F(ZmeshctlTest, DirectoryComesFromTheEnvironmentByDefault) {
  CtlOk({"nodes", "register", "n", "--host", "h"});
  setenv("ZMESH_DIRECTORY", directory_->address().c_str(), 1);
  absl::StatusOr<CommandResult> result =
      RunCommand({BinPath("zmeshctl"), "nodes", "list", "-o", "json"});
  unsetenv("ZMESH_DIRECTORY");
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit_code, 0) << result->err;
  EXPECT_EQ(ParseJson<dv1::ListNodesResponse>(result->out).nodes_size(), 1);
}

TEST_F(ZmeshctlTest, HelpAndVersion) {
  CommandResult help = Ctl({"help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("nodes register"));
  EXPECT_THAT(help.out, HasSubstr("watch"));

  CommandResult command_help = Ctl({"nodes", "register", "--help"});
  EXPECT_EQ(command_help.exit_code, 0);
  EXPECT_THAT(command_help.out, HasSubstr("--ttl-ms MS"));
  EXPECT_THAT(command_help.out, HasSubstr("--directory"));

  CommandResult version = Ctl({"--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_THAT(version.out, ::testing::StartsWith("zmeshctl "));
}

TEST_F(ZmeshctlTest, StatusShowsTheReplica) {
  CtlOk({"nodes", "register", "n", "--host", "h"});
  std::vector<std::string> lines = Lines(CtlOk({"status"}));
  ASSERT_GE(lines.size(), 3u);
  EXPECT_THAT(lines[0],
              ::testing::MatchesRegex(
                  "ID +ENDPOINT +ROLE +TERM +LEADER +COMMIT +APPLIED +LAG +REVISION +VERSION"));
  EXPECT_THAT(lines[1],
              ::testing::MatchesRegex("1 +" + directory_->address() +
                                      " +leader +[0-9]+ +1 +[0-9]+ +[0-9]+ +0 +[0-9]+ +[0-9.]+"));
  EXPECT_THAT(lines[2], HasSubstr("1 nodes"));
  EXPECT_EQ(lines.back(), "Health: healthy");

  google::protobuf::Struct status =
      ParseJson<google::protobuf::Struct>(CtlOk({"status", "-o", "json"}));
  const google::protobuf::ListValue& endpoints = status.fields().at("endpoints").list_value();
  ASSERT_EQ(endpoints.values_size(), 1);
  const google::protobuf::Struct& endpoint = endpoints.values(0).struct_value();
  EXPECT_EQ(endpoint.fields().at("endpoint").string_value(), directory_->address());
  EXPECT_EQ(endpoint.fields().at("status").struct_value().fields().at("nodes").string_value(), "1");
  EXPECT_EQ(endpoint.fields().at("lag").string_value(), "0");
  EXPECT_EQ(status.fields().at("leader_id").string_value(), "1");
  EXPECT_EQ(status.fields().at("health").struct_value().fields().at("verdict").string_value(),
            "healthy");
}

TEST_F(ZmeshctlTest, LeasesGrantListShowRevoke) {
  dv1::GrantResponse granted =
      ParseJson<dv1::GrantResponse>(CtlOk({"leases", "grant", "--ttl-ms", "60000", "-o", "json"}));
  ASSERT_GT(granted.id(), 0);
  EXPECT_EQ(granted.ttl_ms(), 60000);
  const std::string id = std::to_string(granted.id());

  dv1::ListLeasesResponse list =
      ParseJson<dv1::ListLeasesResponse>(CtlOk({"leases", "list", "-o", "json"}));
  ASSERT_EQ(list.leases_size(), 1);
  EXPECT_EQ(list.leases(0).id(), granted.id());
  EXPECT_THAT(CtlOk({"leases", "list"}), HasSubstr("60000"));

  dv1::TimeToLiveResponse shown =
      ParseJson<dv1::TimeToLiveResponse>(CtlOk({"leases", "show", id, "-o", "json"}));
  EXPECT_EQ(shown.lease().ttl_ms(), 60000);
  EXPECT_LE(shown.lease().remaining_ms(), 60000);

  EXPECT_THAT(CtlOk({"leases", "revoke", id}), HasSubstr("lease " + id + " revoked"));
  CommandResult gone = Ctl({"leases", "show", id});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_THAT(gone.err, ::testing::StartsWith("zmeshctl: NOT_FOUND: "));
}

TEST_F(ZmeshctlTest, RegisterWithTtlExpiresTheNodeAndItsTopics) {
  // Long enough for the checks below on a loaded CI machine, short enough to wait for.
  std::string out = CtlOk({"nodes", "register", "tmp", "--host", "h", "--ttl-ms", "3000"});
  // "lease 42 granted (...)": the lease id is printed.
  std::vector<std::string> words = absl::StrSplit(out, ' ');
  ASSERT_GE(words.size(), 2u);
  EXPECT_EQ(words[0], "lease");
  int64_t lease_id = 0;
  ASSERT_TRUE(absl::SimpleAtoi(words[1], &lease_id)) << out;
  CtlOk({"topics", "register", "expiring", "--node", "tmp", "--server", "s"});

  dv1::GetNodeResponse node =
      ParseJson<dv1::GetNodeResponse>(CtlOk({"nodes", "show", "tmp", "-o", "json"}));
  EXPECT_EQ(node.node().lease_id(), lease_id);

  // Nothing keeps the lease alive: the node and its registration go with it.
  EXPECT_TRUE(Eventually(
      [&] {
        CommandResult show = Ctl({"nodes", "show", "tmp"});
        return show.exit_code == 1 && absl::StrContains(show.err, "NOT_FOUND");
      },
      10000));
  dv1::LookupResponse lookup =
      ParseJson<dv1::LookupResponse>(CtlOk({"topics", "show", "expiring", "-o", "json"}));
  EXPECT_EQ(lookup.endpoints_size(), 0);
  CommandResult lease = Ctl({"leases", "show", std::to_string(lease_id)});
  EXPECT_EQ(lease.exit_code, 1);
}

class WatchTest : public ZmeshctlTest {
 protected:
  // Starts `zmeshctl --directory DIRECTORY args...` with output to files in the test's temp dir.
  std::unique_ptr<Subprocess> StartWatch(std::vector<std::string> args,
                                         std::string directory = "") {
    if (directory.empty()) directory = directory_->address();
    std::vector<std::string> argv = {BinPath("zmeshctl"), "--directory", directory};
    argv.insert(argv.end(), args.begin(), args.end());
    absl::StatusOr<std::unique_ptr<Subprocess>> watch =
        Subprocess::Start(argv, out_path_, err_path_);
    EXPECT_TRUE(watch.ok()) << watch.status();
    return watch.ok() ? *std::move(watch) : nullptr;
  }

  std::string Out() { return ReadFile(out_path_).value_or(""); }
  std::string Err() { return ReadFile(err_path_).value_or(""); }

  // SIGTERM and expect a clean exit (code 0).
  void StopAndExpectExitZero(Subprocess& watch) {
    watch.Signal(SIGTERM);
    absl::StatusOr<int> status = watch.Wait(10000);
    ASSERT_TRUE(status.ok()) << status.status();
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
        << DescribeWaitStatus(*status) << "\nstderr: " << Err();
  }

  std::string out_path_ = dir_.path() + "/watch.out";
  std::string err_path_ = dir_.path() + "/watch.err";
};

TEST_F(WatchTest, PrintsPutAndDeleteEventsAndExitsZeroOnSigterm) {
  CtlOk({"nodes", "register", "w1", "--host", "10.1.0.1"});
  CtlOk({"topics", "register", "watched", "--node", "w1", "--server", "w-1"});
  std::unique_ptr<Subprocess> watch = StartWatch({"watch", "--from", "1", "--nodes"});
  ASSERT_NE(watch, nullptr);
  CtlOk({"topics", "unregister", "watched", "--node", "w1", "--server", "w-1"});

  const std::string put = "PUT registration openstack/watched server=w-1 kind=rpc node=w1";
  const std::string del = "DELETE registration openstack/watched server=w-1 kind=rpc node=w1";
  EXPECT_TRUE(Eventually([&] { return absl::StrContains(Out(), del); }, 10000))
      << "stdout: " << Out() << "\nstderr: " << Err();
  std::vector<std::string> lines = Lines(Out());
  ASSERT_EQ(lines.size(), 3u) << Out();
  EXPECT_THAT(lines[0], ::testing::MatchesRegex("rev=2 PUT node w1 host=10.1.0.1 .*"));
  EXPECT_THAT(lines[1], ::testing::MatchesRegex("rev=[0-9]+ " + put));
  EXPECT_THAT(lines[2], ::testing::MatchesRegex("rev=[0-9]+ " + del));

  StopAndExpectExitZero(*watch);
}

TEST_F(WatchTest, JsonPrintsOneEventObjectPerLine) {
  CtlOk({"nodes", "register", "w1", "--host", "10.1.0.1"});
  CtlOk({"topics", "register", "watched", "--node", "w1", "--server", "w-1"});
  std::unique_ptr<Subprocess> watch = StartWatch({"watch", "--from", "1", "-o", "json"});
  ASSERT_NE(watch, nullptr);
  CtlOk({"topics", "unregister", "watched", "--node", "w1", "--server", "w-1"});

  EXPECT_TRUE(Eventually([&] { return Lines(Out()).size() >= 2; }, 10000))
      << "stdout: " << Out() << "\nstderr: " << Err();
  std::vector<std::string> lines = Lines(Out());
  // Without --nodes only registration events.
  ASSERT_EQ(lines.size(), 2u) << Out();
  std::vector<dv1::Event::Type> types;
  for (const std::string& line : lines) {
    google::protobuf::Struct object = ParseJson<google::protobuf::Struct>(line);
    EXPECT_FALSE(object.fields().at("snapshot").bool_value());
    dv1::Event event;
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = true;  // the "snapshot" member
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &event, options).ok()) << line;
    EXPECT_EQ(event.registration().topic(), "watched");
    EXPECT_EQ(event.registration().node(), "w1");
    types.push_back(event.type());
  }
  EXPECT_THAT(types, ::testing::ElementsAre(dv1::Event::TYPE_PUT, dv1::Event::TYPE_DELETE));

  StopAndExpectExitZero(*watch);
}

TEST_F(WatchTest, FiltersByTopicPrefix) {
  CtlOk({"nodes", "register", "w1", "--host", "h"});
  std::unique_ptr<Subprocess> watch = StartWatch({"watch", "--from", "1", "--topic", "comp"});
  ASSERT_NE(watch, nullptr);
  CtlOk({"topics", "register", "network", "--node", "w1", "--server", "s"});
  CtlOk({"topics", "register", "compute", "--node", "w1", "--server", "s"});
  EXPECT_TRUE(Eventually([&] { return absl::StrContains(Out(), "openstack/compute"); }, 10000))
      << "stdout: " << Out() << "\nstderr: " << Err();
  // The later change is delivered, so the earlier one was filtered out, not just late.
  EXPECT_THAT(Out(), Not(HasSubstr("network")));
  EXPECT_THAT(Out(), Not(HasSubstr(" node ")));
  StopAndExpectExitZero(*watch);
}

TEST_F(WatchTest, ResumesOnTheNextReplicaAfterTheLastRevision) {
  // Two independent directories given the same history stand in for two replicas.
  absl::StatusOr<std::unique_ptr<DirectoryProcess>> other =
      DirectoryProcess::Start(dir_.path() + "/other");
  ASSERT_TRUE(other.ok()) << other.status();
  const std::string first = directory_->address();
  const std::string second = (*other)->address();
  for (const std::string& directory : {first, second}) {
    CtlOkAt(directory, {"nodes", "register", "w1", "--host", "h"});
    CtlOkAt(directory, {"topics", "register", "before", "--node", "w1", "--server", "s"});
  }
  std::unique_ptr<Subprocess> watch =
      StartWatch({"watch", "--from", "1"}, absl::StrCat(first, ",", second));
  ASSERT_NE(watch, nullptr);
  EXPECT_TRUE(Eventually([&] { return absl::StrContains(Out(), "openstack/before"); }, 10000))
      << "stdout: " << Out() << "\nstderr: " << Err();

  ASSERT_TRUE(directory_->Stop().ok());
  CtlOkAt(second, {"topics", "register", "after", "--node", "w1", "--server", "s"});
  EXPECT_TRUE(Eventually([&] { return absl::StrContains(Out(), "openstack/after"); }, 10000))
      << "stdout: " << Out() << "\nstderr: " << Err();
  EXPECT_THAT(Err(), HasSubstr("resuming from revision 4 on " + second));
  // Revision 3 was not delivered twice (revision 1 is the replica's own address record).
  std::vector<std::string> lines = Lines(Out());
  ASSERT_EQ(lines.size(), 2u) << Out();
  EXPECT_THAT(lines[0], HasSubstr("rev=3 PUT registration openstack/before"));
  EXPECT_THAT(lines[1], HasSubstr("rev=4 PUT registration openstack/after"));
  StopAndExpectExitZero(*watch);
}

// zmeshctl against a real 3-replica cluster: membership, leadership, per-replica status and
// stale reads.
class ClusterCtlTest : public ::zmesh::testing::ClusterTest {
 protected:
  CommandResult CtlAt(const std::string& directory, std::vector<std::string> args) {
    std::vector<std::string> argv = {BinPath("zmeshctl"), "--directory", directory};
    argv.insert(argv.end(), args.begin(), args.end());
    absl::StatusOr<CommandResult> result = RunCommand(argv, 30000);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : CommandResult{};
  }

  std::string CtlOkAt(const std::string& directory, const std::vector<std::string>& args) {
    CommandResult result = CtlAt(directory, args);
    EXPECT_EQ(result.exit_code, 0) << "zmeshctl " << absl::StrJoin(args, " ")
                                   << "\nstdout: " << result.out << "\nstderr: " << result.err;
    return result.out;
  }

  std::string Follower() const { return cluster_->grpc_address(FollowerId()); }
  uint64_t FollowerId() const { return leader_ == 1 ? 2 : 1; }

  dv1::ListMembersResponse Members() {
    return ParseJson<dv1::ListMembersResponse>(
        CtlOkAt(cluster_->addresses(), {"members", "list", "-o", "json"}));
  }
};

TEST_F(ClusterCtlTest, MembersListAddRemoveWithAJoiner) {
  std::vector<std::string> lines = Lines(CtlOkAt(Follower(), {"members", "list"}));
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_THAT(lines[0], ::testing::MatchesRegex("ID +RAFT-ADDRESS +GRPC-ADDRESS +VOTER +ROLE"));
  for (uint64_t id : {1, 2, 3}) {
    EXPECT_THAT(lines[id],
                ::testing::MatchesRegex(absl::StrCat(id, " +", cluster_->raft_address(id), " +",
                                                     cluster_->grpc_address(id), " +yes +",
                                                     id == leader_ ? "leader" : "follower")));
  }

  absl::StatusOr<uint64_t> joiner = cluster_->StartJoiner();
  ASSERT_TRUE(joiner.ok()) << joiner.status();
  const std::string id = absl::StrCat(*joiner);
  EXPECT_THAT(CtlOkAt(Follower(), {"members", "add", id, cluster_->raft_address(*joiner)}),
              HasSubstr("member " + id + " added at " + cluster_->raft_address(*joiner)));
  ASSERT_TRUE(cluster_->WaitReady(*joiner).ok());
  EXPECT_TRUE(Eventually(
      [&] {
        dv1::ListMembersResponse members = Members();
        return members.members_size() == 4 && members.members(3).id() == *joiner &&
               members.members(3).voter() &&
               members.members(3).grpc_address() == cluster_->grpc_address(*joiner);
      },
      20000))
      << Members().DebugString();

  CommandResult again = CtlAt(Follower(), {"members", "add", id, cluster_->raft_address(*joiner)});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, ::testing::StartsWith("zmeshctl: ALREADY_EXISTS: adding member " + id));

  EXPECT_THAT(CtlOkAt(Follower(), {"members", "remove", id}),
              HasSubstr("member " + id + " removed"));
  EXPECT_TRUE(Eventually([&] { return Members().members_size() == 3; }, 10000));
  CommandResult unknown = CtlAt(Follower(), {"members", "remove", "42"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, ::testing::StartsWith("zmeshctl: NOT_FOUND: removing member 42"));
}

TEST_F(ClusterCtlTest, LeaderTransferPrintsTheNewLeader) {
  const uint64_t target = FollowerId();
  EXPECT_EQ(CtlOkAt(cluster_->addresses(), {"leader", "transfer", absl::StrCat(target)}),
            absl::StrCat("leader is now ", target, " (", cluster_->grpc_address(target), ")\n"));
  absl::StatusOr<uint64_t> leader = cluster_->WaitForLeader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  EXPECT_EQ(*leader, target);

  dv1::TransferLeadershipResponse chosen = ParseJson<dv1::TransferLeadershipResponse>(
      CtlOkAt(cluster_->addresses(), {"leader", "transfer", "-o", "json"}));
  EXPECT_NE(chosen.leader_id(), 0u);
  EXPECT_NE(chosen.leader_id(), target);
}

TEST_F(ClusterCtlTest, StatusShowsEveryMemberWithItsLag) {
  // One address: the other members come from ListMembers.
  std::vector<std::string> lines = Lines(CtlOkAt(Follower(), {"status"}));
  // Header, one row per replica, the leader's summary, nodes and leases, the verdict.
  ASSERT_EQ(lines.size(), 7u) << absl::StrJoin(lines, "\n");
  for (uint64_t id : {1, 2, 3}) {
    EXPECT_THAT(lines[id], ::testing::MatchesRegex(
                               absl::StrCat(id, " +", cluster_->grpc_address(id), " +",
                                            id == leader_ ? "leader" : "follower", " +[0-9]+ +",
                                            leader_, " +[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+ +[0-9.]+")));
  }
  EXPECT_THAT(lines[4], ::testing::StartsWith(absl::StrCat("Leader ", leader_, " (term ")));

  google::protobuf::Struct json =
      ParseJson<google::protobuf::Struct>(CtlOkAt(Follower(), {"status", "-o", "json"}));
  const google::protobuf::ListValue& endpoints = json.fields().at("endpoints").list_value();
  ASSERT_EQ(endpoints.values_size(), 3);
  for (const google::protobuf::Value& endpoint : endpoints.values()) {
    const auto& fields = endpoint.struct_value().fields();
    EXPECT_TRUE(fields.contains("lag"));
    EXPECT_TRUE(fields.at("status").struct_value().fields().contains("applied_index"));
  }

  const uint64_t dead = leader_ == 3 ? 2 : 3;
  cluster_->Kill(dead);
  CommandResult partial = CtlAt(Follower(), {"status"});
  EXPECT_EQ(partial.exit_code, 1);
  EXPECT_THAT(partial.out, ::testing::ContainsRegex(absl::StrCat(
                               "\n", dead, " +", cluster_->grpc_address(dead), " +UNREACHABLE")));
  EXPECT_THAT(partial.out,
              HasSubstr("UNREACHABLE " + cluster_->grpc_address(dead) + ": UNAVAILABLE: "));
  // A replica down in a cluster that keeps its quorum: degraded, not unavailable.
  const std::string reason =
      absl::StrCat("replica ", dead, " (", cluster_->grpc_address(dead), ") did not answer");
  EXPECT_THAT(partial.out, HasSubstr("\nHealth: degraded: " + reason + " (UNAVAILABLE)\n"));
  EXPECT_EQ(partial.err, "zmeshctl: FAILED_PRECONDITION: degraded: " + reason + " (UNAVAILABLE)\n");
}

TEST_F(ClusterCtlTest, StaleReadsAnswerFromTheOneReplicaGiven) {
  CtlOkAt(cluster_->addresses(), {"nodes", "register", "n1", "--host", "h"});
  const std::string follower = Follower();
  EXPECT_TRUE(Eventually(
      [&] {
        CommandResult stale = CtlAt(follower, {"--consistency", "stale", "nodes", "list"});
        return stale.exit_code == 0 && absl::StrContains(stale.out, "n1");
      },
      10000));
  // Alone, the replica has no quorum: a linearizable read cannot be served, a stale one can,
  // from its own state only.
  for (uint64_t id : cluster_->ids()) {
    if (id != FollowerId()) cluster_->Kill(id);
  }
  dv1::ListNodesResponse nodes = ParseJson<dv1::ListNodesResponse>(
      CtlOkAt(follower, {"--consistency", "stale", "nodes", "list", "-o", "json"}));
  ASSERT_EQ(nodes.nodes_size(), 1);
  EXPECT_EQ(nodes.nodes(0).name(), "n1");
  EXPECT_THAT(CtlOkAt(follower, {"nodes", "show", "n1", "--consistency=stale"}), HasSubstr("n1"));

  CommandResult linearizable = CtlAt(follower, {"--timeout-ms", "1500", "nodes", "list"});
  EXPECT_EQ(linearizable.exit_code, 1) << linearizable.out;
}

}  // namespace
}  // namespace zmesh::testing
