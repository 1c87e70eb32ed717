// zmeshctl call / cast / fanout / notify / serve / listen against a real zmesh-directory and a
// real zmesh-proxy: what an operator sees (stdout, stderr, exit codes) when debugging a live
// system through the local proxy. serve and listen run as background processes.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/support/directory_process.h"
#include "tests/support/proxy_process.h"
#include "tests/support/subprocess.h"

namespace zmesh::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr int64_t kReadyTimeoutMs = 15000;
constexpr int64_t kDeliveryTimeoutMs = 10000;

std::vector<std::string> Lines(absl::string_view text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

std::string Describe(const std::vector<std::string>& args, const CommandResult& result) {
  return absl::StrCat("zmeshctl ", absl::StrJoin(args, " "), "\nexit: ", result.exit_code,
                      "\nstdout: ", result.out, "\nstderr: ", result.err);
}

// A `zmeshctl serve` or `zmeshctl listen` running in the background, its stdout and stderr in
// files.
class Background {
 public:
  Background(std::unique_ptr<Subprocess> process, std::string out_path, std::string err_path)
      : process_(std::move(process)),
        out_path_(std::move(out_path)),
        err_path_(std::move(err_path)) {}

  std::string out() const { return ReadFile(out_path_).value_or(""); }
  std::string err() const { return ReadFile(err_path_).value_or(""); }
  Subprocess& process() { return *process_; }

  // Lines printed after the ready line.
  std::vector<std::string> Messages() const {
    std::vector<std::string> lines = Lines(out());
    if (!lines.empty()) lines.erase(lines.begin());
    return lines;
  }

  // Waits until a message line contains `text`.
  bool WaitForMessage(absl::string_view text) const {
    return Eventually(
        [&] {
          for (const std::string& line : Messages()) {
            if (absl::StrContains(line, text)) return true;
          }
          return false;
        },
        kDeliveryTimeoutMs);
  }

  // SIGTERM (or another signal) and the exit status; -1 if it did not exit in time.
  int Stop(int signo = SIGTERM) {
    if (!process_->running()) return -1;
    process_->Signal(signo);
    absl::StatusOr<int> status = process_->Wait(10000);
    if (!status.ok() || !WIFEXITED(*status)) return -1;
    return WEXITSTATUS(*status);
  }

 private:
  std::unique_ptr<Subprocess> process_;
  std::string out_path_;
  std::string err_path_;
};

// Command-line checks that need no proxy.
class MessagesUsageTest : public ::testing::Test {
 protected:
  CommandResult Ctl(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {BinPath("zmeshctl")};
    argv.insert(argv.end(), args.begin(), args.end());
    absl::StatusOr<CommandResult> result = RunCommand(argv, 30000);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : CommandResult{};
  }

  // Expects exit code 2 and the given text in the error line.
  void ExpectUsageError(const std::vector<std::string>& args, absl::string_view text) {
    CommandResult result = Ctl(args);
    EXPECT_EQ(result.exit_code, 2) << Describe(args, result);
    EXPECT_THAT(result.err, HasSubstr(text)) << Describe(args, result);
    EXPECT_THAT(result.out, IsEmpty()) << Describe(args, result);
  }

  TempDir dir_;
};

TEST_F(MessagesUsageTest, UsageErrorsExitTwoAndNameTheProblem) {
  ExpectUsageError({"call", "compute"}, "call: missing argument PAYLOAD");
  ExpectUsageError({"call"}, "call: missing argument TOPIC");
  ExpectUsageError({"notify", "compute", "x"}, "notify: missing required flag --priority");
  ExpectUsageError({"listen", "compute"}, "listen: missing required flag --priority");
  ExpectUsageError({"fanout", "compute", "--server", "s1", "x"}, "fanout: unknown flag --server");
  ExpectUsageError({"serve", "compute", "--echo", "--fail", "no"},
                   "serve: give at most one of --echo, --reply and --fail");
  ExpectUsageError({"call", "", "x", "--ipc-dir", dir_.path()}, "call: TOPIC must not be empty");
  ExpectUsageError({"notify", "compute", "--priority", "", "x", "--ipc-dir", dir_.path()},
                   "notify: --priority must not be empty");
  ExpectUsageError({"call", "compute", "x", "--timeout-ms", "0"},
                   "invalid value 0 for --timeout-ms");
}

TEST_F(MessagesUsageTest, NoProxyAtIpcDirIsAClearErrorAtOnce) {
  const std::string missing = dir_.path() + "/no-proxy-here";
  for (std::vector<std::string> args :
       std::vector<std::vector<std::string>>{{"call", "compute", "x"},
                                             {"cast", "compute", "x"},
                                             {"fanout", "compute", "x"},
                                             {"notify", "compute", "--priority", "info", "x"},
                                             {"serve", "compute", "--echo"},
                                             {"listen", "compute", "--priority", "info"}}) {
    args.insert(args.end(), {"--ipc-dir", missing});
    CommandResult result = Ctl(args);
    EXPECT_EQ(result.exit_code, 1) << Describe(args, result);
    EXPECT_THAT(result.err, HasSubstr(absl::StrCat("no zmesh-proxy at ", missing)))
        << Describe(args, result);
    EXPECT_FALSE(result.timed_out);
  }
}

TEST_F(MessagesUsageTest, IpcDirComesFromTheEnvironmentWhenNotGiven) {
  const std::string missing = dir_.path() + "/from-env";
  std::vector<std::string> argv = {
      "/usr/bin/env", "ZMESH_IPC_DIR=" + missing, BinPath("zmeshctl"), "call", "compute", "x"};
  absl::StatusOr<CommandResult> result = RunCommand(argv, 30000);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit_code, 1);
  EXPECT_THAT(result->err, HasSubstr(absl::StrCat("no zmesh-proxy at ", missing)));
}

// A directory and one proxy standing in for the local node.
class MessagesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<DirectoryProcess>> directory =
        DirectoryProcess::Start(dir_.path() + "/data");
    ASSERT_TRUE(directory.ok()) << directory.status();
    directory_ = *std::move(directory);
    ProxyProcessOptions options;
    options.directory = directory_->address();
    options.node_name = "node-a";
    options.ipc_dir = dir_.path() + "/a";
    absl::StatusOr<std::unique_ptr<ProxyProcess>> proxy = ProxyProcess::Start(options);
    ASSERT_TRUE(proxy.ok()) << proxy.status();
    proxy_ = *std::move(proxy);
  }

  void TearDown() override {
    for (auto& background : background_) {
      if (background->process().running()) background->Stop(SIGKILL);
    }
    if (proxy_ != nullptr && proxy_->running()) {
      EXPECT_TRUE(proxy_->Stop().ok());
    }
  }

  // Runs zmeshctl through the test's proxy (--ipc-dir goes last: command flags follow the
  // command).
  CommandResult Ctl(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {BinPath("zmeshctl")};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--ipc-dir", proxy_->ipc_dir()});
    absl::StatusOr<CommandResult> result = RunCommand(argv, 30000);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : CommandResult{};
  }

  std::string CtlOk(const std::vector<std::string>& args) {
    CommandResult result = Ctl(args);
    EXPECT_EQ(result.exit_code, 0) << Describe(args, result);
    return result.out;
  }

  // Starts `zmeshctl serve|listen ...` and waits for its ready line (text or JSON).
  Background* StartBackground(const std::vector<std::string>& args) {
    std::string name = absl::StrCat(dir_.path(), "/bg-", background_.size());
    std::vector<std::string> argv = {BinPath("zmeshctl")};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--ipc-dir", proxy_->ipc_dir()});
    absl::StatusOr<std::unique_ptr<Subprocess>> process =
        Subprocess::Start(argv, name + ".out", name + ".err");
    EXPECT_TRUE(process.ok()) << process.status();
    if (!process.ok()) return nullptr;
    background_.push_back(
        std::make_unique<Background>(*std::move(process), name + ".out", name + ".err"));
    Background* background = background_.back().get();
    bool ready = Eventually(
        [&] {
          std::vector<std::string> lines = Lines(background->out());
          return (!lines.empty() && (absl::StartsWith(lines[0], "ready:") ||
                                     absl::StartsWith(lines[0], "{\"ready\":true"))) ||
                 background->process().Wait(0).ok();
        },
        kReadyTimeoutMs);
    EXPECT_TRUE(ready && background->process().running())
        << "zmeshctl " << absl::StrJoin(args, " ")
        << " did not get ready\nstdout: " << background->out() << "\nstderr: " << background->err();
    return background;
  }

  // Registrations the directory holds for (openstack, topic), as `zmeshctl topics show` prints.
  std::string TopicsShow(const std::string& topic) {
    absl::StatusOr<CommandResult> result = RunCommand(
        {BinPath("zmeshctl"), "--directory", directory_->address(), "topics", "show", topic},
        30000);
    return result.ok() ? result->out : "";
  }

  TempDir dir_;
  std::unique_ptr<DirectoryProcess> directory_;
  std::unique_ptr<ProxyProcess> proxy_;
  std::vector<std::unique_ptr<Background>> background_;
};

TEST_F(MessagesTest, CallPrintsTheReplyOfAnEchoServer) {
  Background* server = StartBackground({"serve", "compute", "--server", "s1", "--echo"});
  ASSERT_NE(server, nullptr);
  EXPECT_THAT(server->out(),
              HasSubstr("ready: serving openstack/compute server=s1 on node node-a"));

  EXPECT_EQ(CtlOk({"call", "compute", "hello world"}), "hello world\n");
  EXPECT_EQ(CtlOk({"call", "compute", "--server", "s1", "again"}), "again\n");
  std::vector<std::string> messages = server->Messages();
  ASSERT_EQ(messages.size(), 2u) << server->out();
  EXPECT_THAT(messages[0], ::testing::MatchesRegex("call from .+: hello world"));
  EXPECT_THAT(messages[1], ::testing::MatchesRegex("call from .+: again"));
}

TEST_F(MessagesTest, CallToAServerByNameReachesOnlyThatServer) {
  Background* one = StartBackground({"serve", "compute", "--server", "s1", "--reply", "from s1"});
  Background* two = StartBackground({"serve", "compute", "--server", "s2", "--reply", "from s2"});
  ASSERT_NE(one, nullptr);
  ASSERT_NE(two, nullptr);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(CtlOk({"call", "compute", "--server", "s2", absl::StrCat("m", i)}), "from s2\n");
  }
  EXPECT_THAT(one->Messages(), IsEmpty());
  EXPECT_EQ(two->Messages().size(), 3u);
}

TEST_F(MessagesTest, RemoteErrorGoesToStderrAndExitsOne) {
  ASSERT_NE(StartBackground({"serve", "compute", "--server", "s1", "--fail", "disk on fire"}),
            nullptr);
  CommandResult result = Ctl({"call", "compute", "x"});
  EXPECT_EQ(result.exit_code, 1) << result.err;
  EXPECT_THAT(result.out, IsEmpty());
  EXPECT_THAT(result.err, HasSubstr("answered with an error: disk on fire"));

  // Scripts still get the error's payload with -o json.
  result = Ctl({"-o", "json", "call", "compute", "x"});
  EXPECT_EQ(result.exit_code, 1);
  google::protobuf::Struct json;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(result.out, &json).ok()) << result.out;
  EXPECT_EQ(json.fields().at("payload").string_value(), "disk on fire");
  EXPECT_TRUE(json.fields().at("remote_error").bool_value());
}

TEST_F(MessagesTest, CallToNobodyTimesOutOrFailsAtOnceWithAtLeastOnce) {
  CommandResult result = Ctl({"--timeout-ms", "500", "call", "nobody", "x"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.err, HasSubstr("DEADLINE_EXCEEDED"));

  result = Ctl({"call", "nobody", "--at-least-once", "x"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.err, HasSubstr("NOT_FOUND"));
}

TEST_F(MessagesTest, CastsAndFanoutsArePrintedByTheServersThatGetThem) {
  Background* one = StartBackground({"serve", "compute", "--server", "s1"});
  Background* two = StartBackground({"serve", "compute", "--server", "s2"});
  ASSERT_NE(one, nullptr);
  ASSERT_NE(two, nullptr);

  EXPECT_THAT(CtlOk({"cast", "compute", "--server", "s1", "to one"}),
              HasSubstr("cast to openstack/compute server=s1: sent"));
  EXPECT_TRUE(one->WaitForMessage("cast from ")) << one->out();
  EXPECT_THAT(one->Messages(), ElementsAre(::testing::MatchesRegex("cast from .+: to one")));

  // An acknowledged cast returns once the server handled it: the line is already there.
  EXPECT_THAT(CtlOk({"cast", "compute", "--server", "s2", "--ack", "acked"}),
              HasSubstr("cast to openstack/compute server=s2: acknowledged"));
  EXPECT_THAT(two->Messages(), ElementsAre(::testing::MatchesRegex("cast from .+: acked")));

  EXPECT_THAT(CtlOk({"fanout", "compute", "to all"}),
              HasSubstr("fanout to openstack/compute: sent"));
  EXPECT_TRUE(one->WaitForMessage("fanout from ")) << one->out();
  EXPECT_TRUE(two->WaitForMessage("fanout from ")) << two->out();
  EXPECT_THAT(one->Messages(), Not(::testing::Contains(HasSubstr("acked"))));
}

TEST_F(MessagesTest, ExchangesKeepTopicsApart) {
  Background* other = StartBackground(
      {"serve", "compute", "--server", "s1", "--exchange", "other", "--reply", "other exchange"});
  Background* main = StartBackground({"serve", "compute", "--server", "s1", "--reply", "main"});
  ASSERT_NE(other, nullptr);
  ASSERT_NE(main, nullptr);
  EXPECT_EQ(CtlOk({"call", "compute", "--exchange", "other", "x"}), "other exchange\n");
  EXPECT_EQ(CtlOk({"call", "compute", "x"}), "main\n");
}

TEST_F(MessagesTest, EveryPoolGetsTheNotification) {
  Background* billing =
      StartBackground({"listen", "events", "--priority", "info", "--pool", "billing"});
  Background* audit =
      StartBackground({"listen", "events", "--priority", "info", "--pool", "audit"});
  Background* errors = StartBackground({"listen", "events", "--priority", "error"});
  ASSERT_NE(billing, nullptr);
  ASSERT_NE(audit, nullptr);
  ASSERT_NE(errors, nullptr);
  EXPECT_THAT(
      billing->out(),
      HasSubstr("ready: listening on openstack/events.info in pool billing on node node-a"));

  EXPECT_THAT(CtlOk({"notify", "events", "--priority", "info", "instance created"}),
              HasSubstr("notification to openstack/events.info: sent"));
  EXPECT_THAT(CtlOk({"notify", "events", "--priority", "error", "instance failed"}),
              HasSubstr("notification to openstack/events.error: sent"));
  EXPECT_TRUE(billing->WaitForMessage("notification from ")) << billing->out();
  EXPECT_TRUE(audit->WaitForMessage("notification from ")) << audit->out();
  EXPECT_TRUE(errors->WaitForMessage("notification from ")) << errors->out();
  // The error listener got the error notification, which the info listeners never see.
  EXPECT_THAT(errors->Messages(),
              ElementsAre(::testing::MatchesRegex("notification from .+: instance failed")));
  EXPECT_THAT(billing->Messages(),
              ElementsAre(::testing::MatchesRegex("notification from .+: instance created")));
  EXPECT_THAT(audit->Messages(),
              ElementsAre(::testing::MatchesRegex("notification from .+: instance created")));
}

TEST_F(MessagesTest, PayloadBytesThatAreNotTextAreEscaped) {
  Background* server = StartBackground({"serve", "compute", "--server", "s1", "--echo"});
  ASSERT_NE(server, nullptr);
  const std::string payload = std::string("a\nb\tc\\d\x01\xff") + "\xc3\xa9";  // é stays
  EXPECT_EQ(CtlOk({"call", "compute", payload}), "a\\nb\\tc\\\\d\\x01\\xff\xc3\xa9\n");
  EXPECT_TRUE(server->WaitForMessage("a\\nb\\tc\\\\d\\x01\\xff\xc3\xa9")) << server->out();

  // JSON: the exact bytes in base64, the text with the invalid byte replaced.
  std::string out = CtlOk({"-o", "json", "call", "compute", payload});
  google::protobuf::Struct json;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(out, &json).ok()) << out;
  EXPECT_EQ(json.fields().at("payload_base64").string_value(), "YQpiCWNcZAH/w6k=");
  EXPECT_EQ(json.fields().at("payload").string_value(), "a\nb\tc\\d\x01\xef\xbf\xbd\xc3\xa9");
  EXPECT_FALSE(json.fields().at("remote_error").bool_value());
}

TEST_F(MessagesTest, ServeAndListenPrintJsonLinesForScripts) {
  Background* server = StartBackground({"serve", "compute", "--server", "s1", "-o", "json"});
  ASSERT_NE(server, nullptr);
  google::protobuf::Struct ready;
  std::vector<std::string> lines = Lines(server->out());
  ASSERT_FALSE(lines.empty());
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(lines[0], &ready).ok()) << lines[0];
  EXPECT_TRUE(ready.fields().at("ready").bool_value());
  EXPECT_EQ(ready.fields().at("node").string_value(), "node-a");
  EXPECT_EQ(ready.fields().at("target").struct_value().fields().at("server").string_value(), "s1");

  CtlOk({"cast", "compute", "--ack", "json please"});
  std::vector<std::string> messages = server->Messages();
  ASSERT_EQ(messages.size(), 1u) << server->out();
  google::protobuf::Struct message;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(messages[0], &message).ok())
      << messages[0];
  EXPECT_EQ(message.fields().at("kind").string_value(), "cast");
  EXPECT_EQ(message.fields().at("payload").string_value(), "json please");
  EXPECT_FALSE(message.fields().at("sender").string_value().empty());
}

TEST_F(MessagesTest, ServeAndListenExitZeroOnSignalsAndWithdrawTheirTargets) {
  Background* server = StartBackground({"serve", "compute", "--server", "s1", "--echo"});
  Background* listener = StartBackground({"listen", "events", "--priority", "info"});
  ASSERT_NE(server, nullptr);
  ASSERT_NE(listener, nullptr);
  EXPECT_THAT(TopicsShow("compute"), HasSubstr("s1"));

  EXPECT_EQ(server->Stop(SIGINT), 0) << server->err();
  EXPECT_EQ(listener->Stop(SIGTERM), 0) << listener->err();
  EXPECT_TRUE(Eventually([&] { return !absl::StrContains(TopicsShow("compute"), "s1"); }))
      << TopicsShow("compute");
}

TEST_F(MessagesTest, ServeDefaultsItsServerNameToTheHostName) {
  char host[256] = {};
  ASSERT_EQ(gethostname(host, sizeof(host) - 1), 0);
  Background* server = StartBackground({"serve", "compute", "--reply", "ok"});
  ASSERT_NE(server, nullptr);
  EXPECT_THAT(server->out(), HasSubstr(absl::StrCat("server=", host, " ")));
  EXPECT_EQ(CtlOk({"call", "compute", "--server", host, "x"}), "ok\n");
}

}  // namespace
}  // namespace zmesh::testing
