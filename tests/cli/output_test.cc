#include "cli/output.h"

#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "gtest/gtest.h"

namespace zmesh::cli {
namespace {

TEST(TableTest, AlignsColumnsUnderHeaders) {
  Table table({"NAME", "HOST", "PORT"});
  table.AddRow({"node-1", "10.0.0.1", "9501"});
  table.AddRow({"n2", "h", ""});
  EXPECT_EQ(table.Render(),
            "NAME     HOST       PORT\n"
            "node-1   10.0.0.1   9501\n"
            "n2       h\n");
}

TEST(TableTest, IndentsEveryLine) {
  Table table({"A", "B"});
  table.AddRow({"1"});
  EXPECT_EQ(table.Render("  "), "  A   B\n  1\n");
}

TEST(KeyValuesTest, AlignsValues) {
  KeyValues fields;
  fields.Add("Name", "node-1");
  fields.Add("Registrations", "3");
  EXPECT_EQ(fields.Render(), "Name:            node-1\nRegistrations:   3\n");
}

TEST(JsonTest, PrintsZeroValuesAndProtoFieldNames) {
  google::protobuf::Struct message;
  (*message.mutable_fields())["a_b"].set_number_value(0);
  EXPECT_EQ(ToJson(message, false), "{\"a_b\":0}");
}

TEST(JsonTest, QuotesControlCharacters) {
  EXPECT_EQ(JsonQuote("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\n\\u0001\"");
}

TEST(OneLineTest, KeepsOutputOnOneLine) { EXPECT_EQ(OneLine("a\nb\tc\x01"), "a b c\\x01"); }

}  // namespace
}  // namespace zmesh::cli
