#include "cli/args.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace zmesh::cli {
namespace {

using ::testing::HasSubstr;

class CommandLineTest : public ::testing::Test {
 protected:
  CommandLineTest() : line_("zmeshctl", "test program") {
    FlagSpec output = ChoiceFlag("output", "FORMAT", "format", {"table", "json"}, "table");
    output.short_name = 'o';
    line_.AddGlobalFlag(output);
    line_.AddGlobalFlag(StringFlag("directory", "ADDR", "where", "127.0.0.1:9500"));
    line_.AddCommand({{"nodes", "list"}, "list nodes", "", {}, {}});
    line_.AddCommand(
        {{"nodes", "register"},
         "register a node",
         "",
         {{"NODE", "name"}},
         {Required(StringFlag("host", "HOST", "host")),
          IntFlag("call-port", "PORT", "port", 1, 65535, "9501"), BoolFlag("verbose", "more")}});
    line_.AddCommand({{"status"}, "status", "", {}, {}});
    line_.AddCommand(
        {{"leader", "transfer"}, "transfer", "", {{"ID", "target", /*optional=*/true}}, {}});
  }

  absl::StatusOr<Invocation> Parse(const std::vector<std::string>& argv) {
    return line_.Parse(argv);
  }

  std::string ErrorOf(const std::vector<std::string>& argv) {
    absl::StatusOr<Invocation> invocation = Parse(argv);
    EXPECT_FALSE(invocation.ok());
    if (invocation.ok()) return "";
    EXPECT_EQ(invocation.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(invocation.status().message());
  }

  CommandLine line_;
};

TEST_F(CommandLineTest, ParsesCommandPositionalsAndFlags) {
  absl::StatusOr<Invocation> invocation =
      Parse({"nodes", "register", "node-1", "--host", "10.0.0.1", "--call-port=7000"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_EQ(invocation->action, Invocation::Action::kRun);
  ASSERT_NE(invocation->command, nullptr);
  EXPECT_EQ(invocation->command->Path(), "nodes register");
  const ParsedArgs& args = invocation->args;
  EXPECT_EQ(args.positional(0), "node-1");
  EXPECT_EQ(args.GetString("host"), "10.0.0.1");
  EXPECT_EQ(args.GetInt("call-port"), 7000);
  EXPECT_FALSE(args.GetBool("verbose"));
  EXPECT_FALSE(args.Has("output"));
  EXPECT_EQ(args.GetString("output"), "table");
}

TEST_F(CommandLineTest, AbsentFlagsTakeTheirDefaults) {
  absl::StatusOr<Invocation> invocation = Parse({"nodes", "register", "n", "--host", "h"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_FALSE(invocation->args.Has("call-port"));
  EXPECT_EQ(invocation->args.GetInt("call-port"), 9501);
  EXPECT_EQ(invocation->args.GetString("directory"), "127.0.0.1:9500");
}

TEST_F(CommandLineTest, GlobalFlagsMayComeBeforeBetweenOrAfterCommandWords) {
  for (const std::vector<std::string>& argv :
       std::vector<std::vector<std::string>>{{"-o", "json", "nodes", "list"},
                                             {"nodes", "-o", "json", "list"},
                                             {"nodes", "list", "-o", "json"},
                                             {"nodes", "list", "--output=json"},
                                             {"--output", "json", "nodes", "list"}}) {
    absl::StatusOr<Invocation> invocation = Parse(argv);
    ASSERT_TRUE(invocation.ok()) << invocation.status();
    EXPECT_EQ(invocation->command->Path(), "nodes list");
    EXPECT_EQ(invocation->args.GetString("output"), "json");
  }
}

TEST_F(CommandLineTest, BoolFlagsNeedNoValue) {
  absl::StatusOr<Invocation> invocation =
      Parse({"nodes", "register", "n", "--verbose", "--host", "h"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_TRUE(invocation->args.GetBool("verbose"));
  EXPECT_EQ(invocation->args.positional(0), "n");

  invocation = Parse({"nodes", "register", "n", "--verbose=false", "--host", "h"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_FALSE(invocation->args.GetBool("verbose"));
}

TEST_F(CommandLineTest, DoubleDashEndsFlags) {
  absl::StatusOr<Invocation> invocation =
      Parse({"nodes", "register", "--host", "h", "--", "--odd-name"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_EQ(invocation->args.positional(0), "--odd-name");
}

TEST_F(CommandLineTest, MissingRequiredFlagIsNamed) {
  EXPECT_EQ(ErrorOf({"nodes", "register", "n"}), "nodes register: missing required flag --host");
}

TEST_F(CommandLineTest, MissingPositionalIsNamed) {
  EXPECT_EQ(ErrorOf({"nodes", "register", "--host", "h"}), "nodes register: missing argument NODE");
}

TEST_F(CommandLineTest, OptionalPositionalMayBeLeftOut) {
  absl::StatusOr<Invocation> without = Parse({"leader", "transfer"});
  ASSERT_TRUE(without.ok()) << without.status();
  EXPECT_TRUE(without->args.positionals().empty());

  absl::StatusOr<Invocation> with = Parse({"leader", "transfer", "3"});
  ASSERT_TRUE(with.ok()) << with.status();
  EXPECT_EQ(with->args.positional(0), "3");

  EXPECT_EQ(ErrorOf({"leader", "transfer", "3", "4"}),
            "leader transfer: unexpected argument \"4\"");
  absl::StatusOr<Invocation> help = Parse({"help", "leader", "transfer"});
  ASSERT_TRUE(help.ok()) << help.status();
  ASSERT_NE(help->command, nullptr);
  EXPECT_THAT(line_.CommandHelp(*help->command), HasSubstr("zmeshctl leader transfer [ID]"));
}

TEST_F(CommandLineTest, ExtraArgumentIsRejected) {
  EXPECT_EQ(ErrorOf({"nodes", "list", "extra"}), "nodes list: unexpected argument \"extra\"");
}

TEST_F(CommandLineTest, UnknownFlagIsRejected) {
  EXPECT_EQ(ErrorOf({"nodes", "list", "--bogus"}), "nodes list: unknown flag --bogus");
  EXPECT_EQ(ErrorOf({"nodes", "list", "-x"}), "nodes list: unknown flag -x");
  // A command's flag is not accepted by another command.
  EXPECT_EQ(ErrorOf({"nodes", "list", "--host", "h"}), "nodes list: unknown flag --host");
}

TEST_F(CommandLineTest, BadIntegerIsRejected) {
  EXPECT_EQ(ErrorOf({"nodes", "register", "n", "--host", "h", "--call-port", "abc"}),
            "nodes register: invalid value \"abc\" for --call-port: expected an integer");
  EXPECT_EQ(ErrorOf({"nodes", "register", "n", "--host", "h", "--call-port", "70000"}),
            "nodes register: invalid value 70000 for --call-port: must be in 1-65535");
}

TEST_F(CommandLineTest, ChoiceFlagRejectsOtherValues) {
  EXPECT_THAT(ErrorOf({"nodes", "list", "-o", "yaml"}),
              HasSubstr("invalid value \"yaml\" for --output: expected table, json"));
}

TEST_F(CommandLineTest, FlagWithoutValueIsRejected) {
  EXPECT_EQ(ErrorOf({"nodes", "register", "n", "--host"}),
            "nodes register: flag --host needs a value");
}

TEST_F(CommandLineTest, UnknownAndIncompleteCommandsAreRejected) {
  EXPECT_THAT(ErrorOf({"frobnicate"}), HasSubstr("unknown command \"frobnicate\""));
  EXPECT_EQ(ErrorOf({"nodes", "frob"}),
            "nodes: unknown command \"frob\" (expected one of list, register)");
  EXPECT_EQ(ErrorOf({"nodes"}), "nodes: missing subcommand (one of list, register)");
  EXPECT_THAT(ErrorOf({}), HasSubstr("missing command"));
}

TEST_F(CommandLineTest, HelpFlagGivesCommandHelpEvenWithoutRequiredArgs) {
  absl::StatusOr<Invocation> invocation = Parse({"nodes", "register", "--help"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_EQ(invocation->action, Invocation::Action::kHelp);
  ASSERT_NE(invocation->command, nullptr);
  std::string help = line_.CommandHelp(*invocation->command);
  EXPECT_THAT(help, HasSubstr("zmeshctl nodes register NODE --host HOST [--call-port PORT]"));
  EXPECT_THAT(help, HasSubstr("--host HOST"));
  EXPECT_THAT(help, HasSubstr("(required)"));
  EXPECT_THAT(help, HasSubstr("(default 9501)"));
  EXPECT_THAT(help, HasSubstr("-o, --output FORMAT"));
}

TEST_F(CommandLineTest, HelpCommandGivesGroupOrCommandHelp) {
  absl::StatusOr<Invocation> invocation = Parse({"help", "nodes"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_EQ(invocation->action, Invocation::Action::kHelp);
  EXPECT_EQ(invocation->command, nullptr);
  std::string help = line_.GroupHelp(invocation->help_words);
  EXPECT_THAT(help, HasSubstr("nodes list"));
  EXPECT_THAT(help, HasSubstr("nodes register"));
  EXPECT_THAT(help, ::testing::Not(HasSubstr("status")));

  invocation = Parse({"help", "nodes", "list"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  ASSERT_NE(invocation->command, nullptr);
  EXPECT_EQ(invocation->command->Path(), "nodes list");

  EXPECT_THAT(ErrorOf({"help", "bogus"}), HasSubstr("help: unknown command \"bogus\""));
}

TEST_F(CommandLineTest, VersionFlag) {
  absl::StatusOr<Invocation> invocation = Parse({"--version"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_EQ(invocation->action, Invocation::Action::kVersion);
}

TEST_F(CommandLineTest, LastValueOfARepeatedFlagWins) {
  absl::StatusOr<Invocation> invocation = Parse({"-o", "json", "status", "-o", "table"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_EQ(invocation->args.GetString("output"), "table");
}

TEST_F(CommandLineTest, NegativeLookingValueIsTakenAsTheValue) {
  EXPECT_EQ(ErrorOf({"nodes", "register", "n", "--host", "h", "--call-port", "-5"}),
            "nodes register: invalid value -5 for --call-port: must be in 1-65535");
}

}  // namespace
}  // namespace zmesh::cli
