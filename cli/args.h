// A small declarative command-line parser for zmeshctl: each command declares its words
// ("nodes register"), positional arguments and flags; global flags are accepted before, between
// or after the command words. Parse errors are one line meant for the user, e.g.
// `nodes register: missing required flag --host`.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace zmesh::cli {

enum class FlagType { kBool, kString, kInt };

struct FlagSpec {
  // Long name without the dashes ("ttl-ms"); given as --ttl-ms VALUE or --ttl-ms=VALUE.
  std::string name;
  FlagType type = FlagType::kString;
  // Placeholder of the value in help ("MS"); unused for kBool.
  std::string value_name;
  std::string help;
  bool required = false;
  // Value used when the flag is absent ("" = none; for kBool absent means false).
  std::string default_value;
  // Optional one-letter alias ('o' for -o); 0 = none.
  char short_name = 0;
  // kString: when not empty, the only accepted values.
  std::vector<std::string> choices;
  // kInt: accepted range, inclusive.
  int64_t min = std::numeric_limits<int64_t>::min();
  int64_t max = std::numeric_limits<int64_t>::max();
};

// Shorthands for declaring flags.
FlagSpec StringFlag(std::string name, std::string value_name, std::string help,
                    std::string default_value = "");
FlagSpec IntFlag(std::string name, std::string value_name, std::string help, int64_t min,
                 int64_t max, std::string default_value = "");
FlagSpec BoolFlag(std::string name, std::string help);
FlagSpec ChoiceFlag(std::string name, std::string value_name, std::string help,
                    std::vector<std::string> choices, std::string default_value);
// The same flag, marked required.
FlagSpec Required(FlagSpec flag);

struct PositionalSpec {
  // Placeholder in help and errors ("NODE").
  std::string name;
  std::string help;
  // May be left out; only trailing positionals may be optional (shown as [NAME]).
  bool optional = false;
};

struct CommandSpec {
  // Command words, e.g. {"nodes", "register"}.
  std::vector<std::string> words;
  // One line for listings.
  std::string summary;
  // Longer text for COMMAND --help (may be empty).
  std::string description;
  // In order; the required ones first. Nothing else is accepted as a positional argument.
  std::vector<PositionalSpec> positionals;
  std::vector<FlagSpec> flags;

  // "nodes register".
  std::string Path() const;
};

// The values of one parsed invocation. Flag values were validated against their spec while
// parsing, so the getters cannot fail; asking for an undeclared flag is a programming error
// (CHECK).
class ParsedArgs {
 public:
  ParsedArgs() = default;
  ParsedArgs(std::vector<const FlagSpec*> specs, std::map<std::string, std::string> values,
             std::vector<std::string> positionals);

  // True when the flag was given on the command line.
  bool Has(absl::string_view flag) const;
  // The given value, else the default.
  std::string GetString(absl::string_view flag) const;
  int64_t GetInt(absl::string_view flag) const;
  bool GetBool(absl::string_view flag) const;
  const std::vector<std::string>& positionals() const { return positionals_; }
  const std::string& positional(size_t i) const { return positionals_.at(i); }

 private:
  const FlagSpec& Spec(absl::string_view flag) const;

  std::vector<const FlagSpec*> specs_;  // point into the CommandLine that parsed them
  std::map<std::string, std::string, std::less<>> values_;
  std::vector<std::string> positionals_;
};

struct Invocation {
  enum class Action { kRun, kHelp, kVersion };
  Action action = Action::kRun;
  // kRun: the command to run. kHelp: the command whose help to print, or null for the help of
  // `help_words` (a group such as "nodes", or empty for the top level).
  const CommandSpec* command = nullptr;
  std::vector<std::string> help_words;
  ParsedArgs args;
};

// The grammar of a program: global flags and commands. Not thread-safe to modify; Parse is
// const. The CommandLine must outlive the Invocations it returns (they point into it).
class CommandLine {
 public:
  explicit CommandLine(std::string program, std::string summary = "");

  void AddGlobalFlag(FlagSpec flag);
  void AddCommand(CommandSpec command);

  // Parses argv without the program name. `--help`/`-h` anywhere and `help [WORDS...]` give
  // kHelp; `--version` gives kVersion. Errors are INVALID_ARGUMENT with a one-line message
  // that starts with the command path when one was recognized.
  [[nodiscard]] absl::StatusOr<Invocation> Parse(const std::vector<std::string>& argv) const;

  // Help text: for a command, or for a group of commands ({} = the whole program).
  std::string CommandHelp(const CommandSpec& command) const;
  std::string GroupHelp(const std::vector<std::string>& words) const;

  const std::string& program() const { return program_; }

 private:
  // The commands whose words start with `words`.
  std::vector<const CommandSpec*> CommandsUnder(const std::vector<std::string>& words) const;
  const FlagSpec* FindFlag(const std::vector<const FlagSpec*>& flags, absl::string_view name,
                           bool is_short) const;

  std::string program_;
  std::string summary_;
  std::vector<FlagSpec> global_flags_;
  std::vector<CommandSpec> commands_;
};

}  // namespace zmesh::cli
