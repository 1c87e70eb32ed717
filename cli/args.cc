#include "cli/args.h"

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace zmesh::cli {

namespace {

// A broken invariant in the command table is a programming error: crash loudly.
[[noreturn]] void Die(absl::string_view message) {
  std::cerr << "zmeshctl: internal error: " << message << std::endl;
  std::abort();
}

absl::Status ValidateValue(const FlagSpec& spec, absl::string_view value) {
  switch (spec.type) {
    case FlagType::kBool:
      if (value != "true" && value != "false") {
        return absl::InvalidArgumentError(absl::StrCat("invalid value \"", value, "\" for --",
                                                       spec.name, ": expected true or false"));
      }
      return absl::OkStatus();
    case FlagType::kInt: {
      int64_t number = 0;
      if (!absl::SimpleAtoi(value, &number)) {
        return absl::InvalidArgumentError(absl::StrCat("invalid value \"", value, "\" for --",
                                                       spec.name, ": expected an integer"));
      }
      if (number < spec.min || number > spec.max) {
        std::string range;
        if (spec.max == std::numeric_limits<int64_t>::max()) {
          range = absl::StrCat("at least ", spec.min);
        } else if (spec.min == std::numeric_limits<int64_t>::min()) {
          range = absl::StrCat("at most ", spec.max);
        } else {
          range = absl::StrCat("in ", spec.min, "-", spec.max);
        }
        return absl::InvalidArgumentError(
            absl::StrCat("invalid value ", number, " for --", spec.name, ": must be ", range));
      }
      return absl::OkStatus();
    }
    case FlagType::kString:
      if (!spec.choices.empty() &&
          std::find(spec.choices.begin(), spec.choices.end(), value) == spec.choices.end()) {
        return absl::InvalidArgumentError(absl::StrCat("invalid value \"", value, "\" for --",
                                                       spec.name, ": expected ",
                                                       absl::StrJoin(spec.choices, ", ")));
      }
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

std::string FlagUsage(const FlagSpec& flag) {
  std::string usage = flag.short_name != 0
                          ? absl::StrCat("-", std::string(1, flag.short_name), ", --", flag.name)
                          : absl::StrCat("    --", flag.name);
  if (flag.type != FlagType::kBool) {
    absl::StrAppend(&usage, " ", flag.value_name.empty() ? "VALUE" : flag.value_name);
  }
  return usage;
}

std::string FlagLines(const std::vector<FlagSpec>& flags) {
  size_t width = 0;
  for (const FlagSpec& flag : flags) width = std::max(width, FlagUsage(flag).size());
  std::string text;
  for (const FlagSpec& flag : flags) {
    std::string usage = FlagUsage(flag);
    absl::StrAppend(&text, "  ", usage, std::string(width - usage.size() + 3, ' '), flag.help);
    if (flag.required) absl::StrAppend(&text, " (required)");
    if (!flag.default_value.empty()) {
      absl::StrAppend(&text, " (default ", flag.default_value, ")");
    }
    absl::StrAppend(&text, "\n");
  }
  return text;
}

std::string Synopsis(const CommandSpec& command) {
  std::string text = command.Path();
  for (const PositionalSpec& positional : command.positionals) {
    absl::StrAppend(
        &text, " ",
        positional.optional ? absl::StrCat("[", positional.name, "]") : positional.name);
  }
  for (const FlagSpec& flag : command.flags) {
    std::string usage = absl::StrCat("--", flag.name);
    if (flag.type != FlagType::kBool) absl::StrAppend(&usage, " ", flag.value_name);
    absl::StrAppend(&text, " ", flag.required ? usage : absl::StrCat("[", usage, "]"));
  }
  return text;
}

bool StartsWithWords(const CommandSpec& command, const std::vector<std::string>& words) {
  return words.size() <= command.words.size() &&
         std::equal(words.begin(), words.end(), command.words.begin());
}

}  // namespace

FlagSpec StringFlag(std::string name, std::string value_name, std::string help,
                    std::string default_value) {
  FlagSpec flag;
  flag.name = std::move(name);
  flag.type = FlagType::kString;
  flag.value_name = std::move(value_name);
  flag.help = std::move(help);
  flag.default_value = std::move(default_value);
  return flag;
}

FlagSpec IntFlag(std::string name, std::string value_name, std::string help, int64_t min,
                 int64_t max, std::string default_value) {
  FlagSpec flag =
      StringFlag(std::move(name), std::move(value_name), std::move(help), std::move(default_value));
  flag.type = FlagType::kInt;
  flag.min = min;
  flag.max = max;
  return flag;
}

FlagSpec BoolFlag(std::string name, std::string help) {
  FlagSpec flag = StringFlag(std::move(name), "", std::move(help));
  flag.type = FlagType::kBool;
  return flag;
}

FlagSpec ChoiceFlag(std::string name, std::string value_name, std::string help,
                    std::vector<std::string> choices, std::string default_value) {
  FlagSpec flag =
      StringFlag(std::move(name), std::move(value_name), std::move(help), std::move(default_value));
  flag.choices = std::move(choices);
  return flag;
}

FlagSpec Required(FlagSpec flag) {
  flag.required = true;
  return flag;
}

std::string CommandSpec::Path() const { return absl::StrJoin(words, " "); }

ParsedArgs::ParsedArgs(std::vector<const FlagSpec*> specs,
                       std::map<std::string, std::string> values,
                       std::vector<std::string> positionals)
    : specs_(std::move(specs)),
      values_(values.begin(), values.end()),
      positionals_(std::move(positionals)) {}

const FlagSpec& ParsedArgs::Spec(absl::string_view flag) const {
  for (const FlagSpec* spec : specs_) {
    if (spec->name == flag) return *spec;
  }
  Die(absl::StrCat("flag --", flag, " is not declared by this command"));
}

bool ParsedArgs::Has(absl::string_view flag) const {
  Spec(flag);
  return values_.find(flag) != values_.end();
}

std::string ParsedArgs::GetString(absl::string_view flag) const {
  const FlagSpec& spec = Spec(flag);
  auto it = values_.find(flag);
  return it != values_.end() ? it->second : spec.default_value;
}

int64_t ParsedArgs::GetInt(absl::string_view flag) const {
  const FlagSpec& spec = Spec(flag);
  if (spec.type != FlagType::kInt) Die(absl::StrCat("flag --", flag, " is not an integer"));
  std::string text = GetString(flag);
  int64_t value = 0;
  if (text.empty()) return 0;
  if (!absl::SimpleAtoi(text, &value)) Die(absl::StrCat("bad default for --", flag));
  return value;
}

bool ParsedArgs::GetBool(absl::string_view flag) const {
  const FlagSpec& spec = Spec(flag);
  if (spec.type != FlagType::kBool) Die(absl::StrCat("flag --", flag, " is not a boolean"));
  return GetString(flag) == "true";
}

CommandLine::CommandLine(std::string program, std::string summary)
    : program_(std::move(program)), summary_(std::move(summary)) {}

void CommandLine::AddGlobalFlag(FlagSpec flag) { global_flags_.push_back(std::move(flag)); }

void CommandLine::AddCommand(CommandSpec command) {
  if (command.words.empty()) Die("command without words");
  for (size_t i = 1; i < command.positionals.size(); ++i) {
    if (command.positionals[i - 1].optional && !command.positionals[i].optional) {
      Die(absl::StrCat("command \"", command.Path(), "\": required argument ",
                       command.positionals[i].name, " after an optional one"));
    }
  }
  for (const CommandSpec& other : commands_) {
    if (StartsWithWords(other, command.words) || StartsWithWords(command, other.words)) {
      Die(absl::StrCat("command \"", command.Path(), "\" clashes with \"", other.Path(), "\""));
    }
  }
  commands_.push_back(std::move(command));
}

std::vector<const CommandSpec*> CommandLine::CommandsUnder(
    const std::vector<std::string>& words) const {
  std::vector<const CommandSpec*> found;
  for (const CommandSpec& command : commands_) {
    if (StartsWithWords(command, words)) found.push_back(&command);
  }
  return found;
}

const FlagSpec* CommandLine::FindFlag(const std::vector<const FlagSpec*>& flags,
                                      absl::string_view name, bool is_short) const {
  for (const FlagSpec* flag : flags) {
    if (is_short ? (name.size() == 1 && flag->short_name == name[0]) : flag->name == name) {
      return flag;
    }
  }
  return nullptr;
}

absl::StatusOr<Invocation> CommandLine::Parse(const std::vector<std::string>& argv) const {
  Invocation invocation;
  std::vector<std::string> words;        // command words recognized so far
  const CommandSpec* command = nullptr;  // set once `words` names a whole command
  std::vector<const FlagSpec*> flags;    // flags accepted at this point
  for (const FlagSpec& flag : global_flags_) flags.push_back(&flag);
  std::map<std::string, std::string> values;
  std::vector<std::string> positionals;
  bool help = false;
  bool version = false;
  bool only_positionals = false;  // after "--"

  auto error = [&](absl::string_view message) {
    std::string where = command != nullptr ? command->Path() : absl::StrJoin(words, " ");
    return absl::InvalidArgumentError(where.empty() ? std::string(message)
                                                    : absl::StrCat(where, ": ", message));
  };

  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (!only_positionals && arg == "--") {
      only_positionals = true;
      continue;
    }
    if (!only_positionals && arg.size() > 1 && arg[0] == '-') {
      if (arg == "--help" || arg == "-h") {
        help = true;
        continue;
      }
      if (arg == "--version") {
        version = true;
        continue;
      }
      bool is_short = arg[1] != '-';
      absl::string_view body = absl::string_view(arg).substr(is_short ? 1 : 2);
      absl::string_view name = body;
      absl::string_view inline_value;
      bool has_inline_value = false;
      if (size_t eq = body.find('='); eq != absl::string_view::npos) {
        name = body.substr(0, eq);
        inline_value = body.substr(eq + 1);
        has_inline_value = true;
      }
      const FlagSpec* spec = FindFlag(flags, name, is_short);
      if (spec == nullptr) {
        // A flag of the command may come before the last command word was seen.
        return error(absl::StrCat("unknown flag ", is_short ? "-" : "--", name));
      }
      std::string value;
      if (has_inline_value) {
        value = std::string(inline_value);
      } else if (spec->type == FlagType::kBool) {
        value = "true";
      } else if (i + 1 < argv.size()) {
        value = argv[++i];
      } else {
        return error(absl::StrCat("flag --", spec->name, " needs a value"));
      }
      if (absl::Status status = ValidateValue(*spec, value); !status.ok()) {
        return error(status.message());
      }
      values[spec->name] = std::move(value);
      continue;
    }
    if (command == nullptr && !only_positionals) {
      // Still reading command words.
      if (words.empty() && arg == "help") {
        invocation.action = Invocation::Action::kHelp;
        for (size_t j = i + 1; j < argv.size(); ++j) {
          if (!argv[j].empty() && argv[j][0] == '-') continue;
          invocation.help_words.push_back(argv[j]);
        }
        std::vector<const CommandSpec*> under = CommandsUnder(invocation.help_words);
        if (under.empty()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "help: unknown command \"", absl::StrJoin(invocation.help_words, " "), "\""));
        }
        if (under.size() == 1 && under[0]->words == invocation.help_words) {
          invocation.command = under[0];
        }
        return invocation;
      }
      std::vector<std::string> next = words;
      next.push_back(arg);
      std::vector<const CommandSpec*> under = CommandsUnder(next);
      if (under.empty()) {
        if (words.empty()) {
          return absl::InvalidArgumentError(absl::StrCat("unknown command \"", arg, "\" (run '",
                                                         program_, " help' for the commands)"));
        }
        std::vector<std::string> choices;
        for (const CommandSpec* c : CommandsUnder(words)) choices.push_back(c->words[words.size()]);
        return error(absl::StrCat("unknown command \"", arg, "\" (expected one of ",
                                  absl::StrJoin(choices, ", "), ")"));
      }
      words = std::move(next);
      if (under.size() == 1 && under[0]->words == words) {
        command = under[0];
        for (const FlagSpec& flag : command->flags) flags.push_back(&flag);
      }
      continue;
    }
    if (command == nullptr) return error(absl::StrCat("unexpected argument \"", arg, "\""));
    positionals.push_back(arg);
  }

  if (version && command == nullptr && words.empty()) {
    invocation.action = Invocation::Action::kVersion;
    return invocation;
  }
  if (help) {
    invocation.action = Invocation::Action::kHelp;
    invocation.command = command;
    invocation.help_words = words;
    return invocation;
  }
  if (version) return error("unknown flag --version");
  if (command == nullptr) {
    if (words.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("missing command (run '", program_, " help' for the commands)"));
    }
    std::vector<std::string> choices;
    for (const CommandSpec* c : CommandsUnder(words)) choices.push_back(c->words[words.size()]);
    return error(absl::StrCat("missing subcommand (one of ", absl::StrJoin(choices, ", "), ")"));
  }
  if (positionals.size() < command->positionals.size() &&
      !command->positionals[positionals.size()].optional) {
    return error(absl::StrCat("missing argument ", command->positionals[positionals.size()].name));
  }
  if (positionals.size() > command->positionals.size()) {
    return error(
        absl::StrCat("unexpected argument \"", positionals[command->positionals.size()], "\""));
  }
  for (const FlagSpec* flag : flags) {
    if (flag->required && values.find(flag->name) == values.end()) {
      return error(absl::StrCat("missing required flag --", flag->name));
    }
  }
  invocation.action = Invocation::Action::kRun;
  invocation.command = command;
  invocation.args = ParsedArgs(std::move(flags), std::move(values), std::move(positionals));
  return invocation;
}

std::string CommandLine::CommandHelp(const CommandSpec& command) const {
  std::string text =
      absl::StrCat(command.summary, "\n\nUsage:\n  ", program_, " ", Synopsis(command), "\n");
  if (!command.description.empty()) absl::StrAppend(&text, "\n", command.description, "\n");
  if (!command.positionals.empty()) {
    absl::StrAppend(&text, "\nArguments:\n");
    size_t width = 0;
    for (const PositionalSpec& p : command.positionals) width = std::max(width, p.name.size());
    for (const PositionalSpec& p : command.positionals) {
      absl::StrAppend(&text, "  ", p.name, std::string(width - p.name.size() + 3, ' '), p.help,
                      p.optional ? " (optional)" : "", "\n");
    }
  }
  if (!command.flags.empty()) absl::StrAppend(&text, "\nFlags:\n", FlagLines(command.flags));
  absl::StrAppend(&text, "\nGlobal flags:\n", FlagLines(global_flags_));
  return text;
}

std::string CommandLine::GroupHelp(const std::vector<std::string>& words) const {
  std::string text;
  if (words.empty()) {
    absl::StrAppend(&text, summary_, "\n\nUsage:\n  ", program_,
                    " [GLOBAL FLAGS] COMMAND [ARGS] [FLAGS]\n\nCommands:\n");
  } else {
    absl::StrAppend(&text, "Usage:\n  ", program_, " ", absl::StrJoin(words, " "),
                    " COMMAND [ARGS] [FLAGS]\n\nCommands:\n");
  }
  std::vector<const CommandSpec*> commands = CommandsUnder(words);
  size_t width = 0;
  for (const CommandSpec* command : commands) width = std::max(width, command->Path().size());
  for (const CommandSpec* command : commands) {
    std::string path = command->Path();
    absl::StrAppend(&text, "  ", path, std::string(width - path.size() + 3, ' '), command->summary,
                    "\n");
  }
  absl::StrAppend(&text, "\nGlobal flags:\n", FlagLines(global_flags_), "\nRun '", program_,
                  " COMMAND --help' for the flags of a command.\n");
  return text;
}

}  // namespace zmesh::cli
