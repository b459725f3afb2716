// report.svg: test accuracy against cumulative g CO2e (svg.h).
#include "svg.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "format.h"

namespace greenfed {
namespace report {
namespace internal {
namespace {

std::string XmlEscape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string TickLabel(double value) {
  if (value >= 1e-3 && value < 1e6) return FormatPlain(value);
  return Printf("%.0e", value);
}

// 190 px of legend fit about 36 characters at font size 10.
constexpr size_t kStrategyChars = 36;

// `text` in lines of at most `width` characters where it can break after ", "; a
// longer piece stays whole. Empty text gives no lines.
std::vector<std::string> WrapAtCommas(const std::string& text, size_t width) {
  std::vector<std::string> lines;
  std::string line;
  size_t start = 0;
  while (start < text.size()) {
    size_t comma = text.find(", ", start);
    const size_t end = comma == std::string::npos ? text.size() : comma + 2;
    const std::string piece = text.substr(start, end - start);
    if (!line.empty() && line.size() + piece.size() > width + 1) {  // + 1: a trailing space is free
      while (!line.empty() && line.back() == ' ') line.pop_back();
      lines.push_back(line);
      line.clear();
    }
    line += piece;
    start = end;
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  if (!line.empty()) lines.push_back(line);
  return lines;
}

}  // namespace

namespace {
std::string Plot(const ReportTables& tables, const std::vector<RunData>& runs, const std::vector<std::string>& labels,
                 const std::vector<std::string>& notes);
}  // namespace

std::string ReportSvg(const ReportTables& tables, const std::vector<RunData>& runs) {
  std::vector<std::string> notes;
  for (const RunData& run : runs) notes.push_back(run.config.strategy);
  return Plot(tables, runs, tables.run_labels, notes);
}

std::string TradeoffSvg(const ReportTables& tables, const std::vector<RunData>& runs) {
  std::vector<RunData> picked;
  std::vector<std::string> notes;
  for (size_t i : tables.tradeoff_runs) {
    picked.push_back(runs[i]);
    notes.push_back(runs[i].config.sampling_settings);
  }
  return Plot(tables, picked, tables.tradeoff_labels, notes);
}

namespace {

std::string Plot(const ReportTables& tables, const std::vector<RunData>& runs, const std::vector<std::string>& labels,
                 const std::vector<std::string>& notes) {
  constexpr double kWidth = 800, kHeight = 500;
  constexpr double kLeft = 70, kRight = 560, kTop = 50, kBottom = 430;
  static const char* const kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                        "#8c564b", "#e377c2", "#7f7f7f", "#17becf", "#bcbd22"};

  // Points: (cumulative g CO2e, test accuracy) per round.
  std::vector<std::vector<std::pair<double, double>>> curves;
  double x_min = std::numeric_limits<double>::infinity();
  double x_max = 0;
  double y_floor = tables.target_accuracy;
  for (const RunData& run : runs) {
    std::vector<std::pair<double, double>> points;
    double cumulative_g = 0;
    for (const RoundRow& r : run.rounds) {
      cumulative_g += r.co2e_g;
      if (cumulative_g <= 0) continue;  // log axis
      points.emplace_back(cumulative_g, r.test_accuracy);
      x_min = std::min(x_min, cumulative_g);
      x_max = std::max(x_max, cumulative_g);
      y_floor = std::min(y_floor, r.test_accuracy);
    }
    curves.push_back(std::move(points));
  }
  int decade_lo = -3;
  int decade_hi = 0;
  if (x_max > 0) {
    decade_lo = static_cast<int>(std::floor(std::log10(x_min)));
    decade_hi = static_cast<int>(std::ceil(std::log10(x_max)));
    if (decade_hi <= decade_lo) decade_hi = decade_lo + 1;
  }
  // Zoom to [0.5, 1] unless some point lies lower; then step down by 0.1.
  const double y_lo = std::max(0.0, std::min(0.5, std::floor(y_floor * 10) / 10));
  auto x_of = [&](double g) {
    return kLeft + (std::log10(g) - decade_lo) / (decade_hi - decade_lo) * (kRight - kLeft);
  };
  auto y_of = [&](double acc) { return kBottom - (acc - y_lo) / (1.0 - y_lo) * (kBottom - kTop); };
  auto num = [](double v) { return Printf("%.1f", v); };

  std::string svg =
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"800\" height=\"500\" viewBox=\"0 0 " +
      num(kWidth) + " " + num(kHeight) + "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  svg += "<rect x=\"0\" y=\"0\" width=\"800\" height=\"500\" fill=\"white\"/>\n";
  svg += "<text x=\"400\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">" +
         XmlEscape("Test accuracy against cumulative g CO2e" +
                   (tables.task.empty() ? std::string() : " (" + tables.task + ")")) +
         "</text>\n";
  // Grid and ticks.
  svg += "<g stroke=\"#dddddd\" stroke-width=\"1\">\n";
  for (int d = decade_lo; d < decade_hi; ++d) {
    for (int m = 2; m <= 9; ++m) {
      double x = x_of(m * std::pow(10.0, d));
      svg += "<line x1=\"" + num(x) + "\" y1=\"" + num(kBottom) + "\" x2=\"" + num(x) + "\" y2=\"" +
             num(kBottom - 4) + "\" stroke=\"#999999\"/>\n";
    }
  }
  for (int d = decade_lo; d <= decade_hi; ++d) {
    double x = x_of(std::pow(10.0, d));
    svg += "<line x1=\"" + num(x) + "\" y1=\"" + num(kTop) + "\" x2=\"" + num(x) + "\" y2=\"" +
           num(kBottom) + "\"/>\n";
  }
  const int y_steps = static_cast<int>(std::lround((1.0 - y_lo) * 10));
  for (int s = 0; s <= y_steps; ++s) {
    double y = y_of(y_lo + s * 0.1);
    svg += "<line x1=\"" + num(kLeft) + "\" y1=\"" + num(y) + "\" x2=\"" + num(kRight) +
           "\" y2=\"" + num(y) + "\"/>\n";
  }
  svg += "</g>\n<g fill=\"#333333\">\n";
  for (int d = decade_lo; d <= decade_hi; ++d) {
    svg += "<text x=\"" + num(x_of(std::pow(10.0, d))) + "\" y=\"" + num(kBottom + 16) +
           "\" text-anchor=\"middle\">" + XmlEscape(TickLabel(std::pow(10.0, d))) + "</text>\n";
  }
  for (int s = 0; s <= y_steps; ++s) {
    double acc = y_lo + s * 0.1;
    svg += "<text x=\"" + num(kLeft - 6) + "\" y=\"" + num(y_of(acc) + 4) +
           "\" text-anchor=\"end\">" + Printf("%.1f", acc) + "</text>\n";
  }
  svg += "</g>\n";
  svg += "<rect x=\"" + num(kLeft) + "\" y=\"" + num(kTop) + "\" width=\"" + num(kRight - kLeft) +
         "\" height=\"" + num(kBottom - kTop) + "\" fill=\"none\" stroke=\"#333333\"/>\n";
  svg +=
      "<text x=\"" + num((kLeft + kRight) / 2) + "\" y=\"" + num(kBottom + 38) +
      "\" text-anchor=\"middle\">" +
      XmlEscape("cumulative g CO2e, log scale (each node at its own country's intensity and PUE)") +
      "</text>\n";
  svg += "<text x=\"18\" y=\"" + num((kTop + kBottom) / 2) +
         "\" text-anchor=\"middle\" transform=\"rotate(-90 18 " + num((kTop + kBottom) / 2) +
         ")\">test accuracy (top-1)</text>\n";
  // Target.
  const double y_target = y_of(tables.target_accuracy);
  svg += "<line x1=\"" + num(kLeft) + "\" y1=\"" + num(y_target) + "\" x2=\"" + num(kRight) +
         "\" y2=\"" + num(y_target) +
         "\" stroke=\"#000000\" stroke-width=\"1.2\" stroke-dasharray=\"6 4\"/>\n";
  svg += "<text x=\"" + num(kLeft + 4) + "\" y=\"" + num(y_target - 5) + "\">" +
         XmlEscape("target " + FormatTarget(tables.target_accuracy)) + "</text>\n";
  // Curves and legend.
  double legend_y = kTop + 10;
  for (size_t i = 0; i < curves.size(); ++i) {
    const std::string color = kColors[i % (sizeof(kColors) / sizeof(kColors[0]))];
    std::string points;
    for (const auto& p : curves[i]) {
      if (!points.empty()) points += ' ';
      points += num(x_of(p.first)) + "," + num(y_of(p.second));
    }
    svg += "<polyline fill=\"none\" stroke=\"" + color + "\" stroke-width=\"2\" points=\"" +
           points + "\"/>\n";
    for (const auto& p : curves[i]) {
      svg += "<circle cx=\"" + num(x_of(p.first)) + "\" cy=\"" + num(y_of(p.second)) +
             "\" r=\"2.5\" fill=\"" + color + "\"/>\n";
    }
    svg += "<line x1=\"575\" y1=\"" + num(legend_y) + "\" x2=\"600\" y2=\"" + num(legend_y) +
           "\" stroke=\"" + color + "\" stroke-width=\"2\"/>\n";
    std::string label = labels[i];
    if (curves[i].empty()) label += " (no CO2e data)";
    // 190 px of legend fit about 30 characters: break a longer label at a space.
    constexpr size_t kLegendChars = 30;
    std::string second;
    if (label.size() > kLegendChars) {
      const size_t cut = label.rfind(' ', kLegendChars);
      if (cut != std::string::npos && cut > 0) {
        second = label.substr(cut + 1);
        label.resize(cut);
      }
    }
    svg += "<text x=\"606\" y=\"" + num(legend_y + 4) + "\">" + XmlEscape(label);
    if (!second.empty()) {
      svg += "<tspan x=\"606\" dy=\"14\">" + XmlEscape(second) + "</tspan>";
      legend_y += 14;
    }
    svg += "</text>\n";
    // The strategy and its settings under the label, smaller, broken after ", ".
    for (const std::string& line : WrapAtCommas(notes[i], kStrategyChars)) {
      legend_y += 13;
      svg += "<text x=\"606\" y=\"" + num(legend_y + 4) + "\" font-size=\"10\" fill=\"#555555\">" +
             XmlEscape(line) + "</text>\n";
    }
    legend_y += 22;
  }
  svg += "</svg>\n";
  return svg;
}

}  // namespace

}  // namespace internal
}  // namespace report
}  // namespace greenfed
