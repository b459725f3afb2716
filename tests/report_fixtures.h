// What the report tests (test_report.cc, test_tradeoff.cc) build their canned run
// directories from: a carbon table with round numbers and the CSV headers a run
// directory's rounds.csv and nodes.csv start with (docs/run-directory.md).
//
// Contract: TestTable() REQUIREs that the table parses. Thread-safety: none needed.
#pragma once

#include <doctest/doctest.h>

#include <utility>

#include "greenfed/carbon.h"
#include "run_helpers.h"

namespace greenfed::testing {

// USA 400, FRA 50, WORLD 500 g/kWh: round numbers so the cells can be checked by hand.
inline CarbonTable TestTable() {
  StatusOr<CarbonTable> table = CarbonTable::FromCsv(
      "code,name,g_per_kwh,year,source\n"
      "USA,United States,400,2023,test\n"
      "FRA,France,50,2023,test\n"
      "WORLD,World,500,2023,test\n");
  REQUIRE(table.ok());
  return std::move(table).value();
}

inline constexpr char kRoundsHeader[] =
    "round,clients_sampled,clients_succeeded,clients_failed,test_accuracy,test_loss,train_loss,"
    "round_s,elapsed_s,bytes_sent,bytes_received,energy_j,comm_j,co2e_g,fed_accuracy\n";
inline constexpr char kNodesHeader[] =
    "round,node_id,role,country,pue,wall_s,cpu_s,train_j,evaluate_j,aggregate_j,idle_j,compute_j,"
    "comm_j,bytes_sent,bytes_received,source,measured\n";

}  // namespace greenfed::testing
