# Write limma's own results for fixed inputs, for tests/test_compare_null.py (the Python port
# of squeezeVar / eBayes in src/pinnacle/compare/_limma.py and _moderation.py is tested against them).
#
# R is a tool for making these fixtures, never a dependency of the pipeline.
#
#   apt-get install -y r-bioc-limma r-bioc-edger r-cran-statmod      # Debian: limma 3.54
#   Rscript tools/limma_fixtures.R [LIMMA_SRC] [OUT_DIR]
#
# LIMMA_SRC (optional): a checkout of current limma (github.com/bioc/limma, >= 3.61) whose R/
#   files squeezeVar.R, fitFDist.R, fitFDistRobustly.R, fitFDistUnequalDF1.R are sourced over
#   the installed limma for the cases with unequal residual df: limma 3.61 changed how those
#   are fitted (fitFDistUnequalDF1), and the Python follows current limma. Without it those
#   cases are skipped. The equal-df cases use the installed limma (3.54: the same algorithm).
# OUT_DIR: default tests/fixtures/limma.
#
# Writes (numbers with 17 significant digits):
#   squeezevar.tsv          case, i, var, df, covariate, robust, legacy, var_post, df_prior, var_prior
#   composition_counts.tsv  the counts of the composition cases (samples x cell types + sheet)
#   composition_ebayes.tsv  case, cell_type, coef, stdev_unscaled, sigma2, amean, s2_prior,
#                           df_prior, s2_post, t, df_total, p_value  (lmFit + eBayes, as propeller)
#   versions.tsv            R, limma (installed) and the limma source version used, if any

suppressPackageStartupMessages({
  library(limma)
  library(statmod)
})

args <- commandArgs(trailingOnly = TRUE)
limma_src <- if (length(args) >= 1 && nzchar(args[1])) args[1] else NA
out_dir <- if (length(args) >= 2) args[2] else "tests/fixtures/limma"
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

fmt <- function(df) {
  for (j in seq_along(df)) if (is.double(df[[j]])) df[[j]] <- sprintf("%.17g", df[[j]])
  df
}
write_tsv <- function(df, name) {
  write.table(fmt(df), file.path(out_dir, name), sep = "\t", quote = FALSE, row.names = FALSE)
}

# ------------------------------------------------------------------------------------------
# squeezeVar cases
# ------------------------------------------------------------------------------------------
set.seed(20240601)
rinvchisq <- function(n, d0, s0) d0 * s0 / rchisq(n, d0)
draw <- function(n, df, d0, s0) rinvchisq(n, d0, s0) * rchisq(n, df) / df

cases <- list()
add_case <- function(name, var, df, covariate = NULL, robust = FALSE, legacy = NULL, sv = squeezeVar) {
  out <- if (is.null(legacy)) {
    sv(var, df, covariate = covariate, robust = robust)
  } else {
    sv(var, df, covariate = covariate, robust = robust, legacy = legacy)
  }
  n <- length(var)
  cases[[name]] <<- data.frame(
    case = name, i = seq_len(n), var = var, df = rep_len(df, n),
    covariate = if (is.null(covariate)) NA_real_ else covariate,
    robust = robust, legacy = if (is.null(legacy)) NA else legacy,
    var_post = out$var.post, df_prior = rep_len(out$df.prior, n), var_prior = rep_len(out$var.prior, n)
  )
}

# plain moments (fitFDist), prior d0 = 6
add_case("plain", draw(30, 4, 6, 0.3), 4)
# no spread beyond sampling: evar <= 0, infinite prior df
v <- 0.5 * qchisq(ppoints(25), 6) / 6
add_case("plain_inf", v, 6)
# few features (composition of ~12 types at 4 pairs: df 3)
add_case("plain_small", draw(12, 3, 10, 0.05), 3)
# robust: three upper outliers and one lower one among 40
v <- draw(40, 5, 8, 1)
v[c(3, 17, 29)] <- v[c(3, 17, 29)] * c(20, 8, 40)
v[11] <- v[11] * 0.01
add_case("robust", v, 5, robust = TRUE)
# robust, no outlier
add_case("robust_none", draw(40, 5, 8, 1), 5, robust = TRUE)
# robust on few features with one wide one (the malignant fraction)
v <- draw(15, 6, 20, 0.02)
v[15] <- v[15] * 25
add_case("robust_small", v, 6, robust = TRUE)
# robust with variances alike: Winsorized variance at or below the df2 = Inf value
v <- 2 * qchisq(ppoints(30), 8) / 8
v[30] <- 12
add_case("robust_inf", v, 8, robust = TRUE)
# trend (covariate): log prior variance falls with abundance, natural spline (fitFDist)
cv <- sort(runif(24, 0.05, 0.6))
v <- draw(24, 4, 10, 1) * exp(-3 * cv + 2 * cv^2) * 0.01
add_case("trend", v, 4, covariate = cv)
add_case("trend_robust", v * replace(rep(1, 24), c(5, 20), c(15, 0.05)), 4, covariate = cv, robust = TRUE)
# trend with 8 (spline df 3) and 5 (df 2) features; covariate not sorted
cv8 <- runif(8, 0, 1)
add_case("trend_8", draw(8, 3, 10, 1) * exp(cv8), 3, covariate = cv8)
cv5 <- runif(5, 0, 1)
add_case("trend_5", draw(5, 3, 10, 1) * exp(cv5), 3, covariate = cv5)
# robust trend on 18 features (composition-sized), one upper outlier
cv18 <- runif(18, 0.05, 0.6)
v <- draw(18, 3, 15, 1) * exp(-4 * cv18) * 0.01
v[7] <- v[7] * 30
add_case("trend_robust_18", v, 3, covariate = cv18, robust = TRUE)
# robust trend with real spread (finite prior df, the root-finding path) and outliers both sides
cv40 <- runif(40, -2, 3)
v <- draw(40, 4, 3, 1) * exp(sin(cv40))
v[c(2, 9, 33)] <- v[c(2, 9, 33)] * c(25, 12, 0.01)
add_case("trend_robust_spread", v, 4, covariate = cv40, robust = TRUE)

# unequal df (limma >= 3.61: fitFDistUnequalDF1), from the current limma sources
src_version <- NA
if (!is.na(limma_src)) {
  cur <- new.env(parent = asNamespace("limma"))
  for (f in c("squeezeVar.R", "fitFDist.R", "fitFDistRobustly.R", "fitFDistUnequalDF1.R")) {
    sys.source(file.path(limma_src, "R", f), envir = cur)
  }
  desc <- file.path(limma_src, "DESCRIPTION")
  if (file.exists(desc)) src_version <- read.dcf(desc, fields = "Version")[1, 1]
  dfs <- rep(c(2, 3, 4, 5, 6, 8), length.out = 60)
  v <- rinvchisq(60, 7, 0.4) * rchisq(60, dfs) / dfs
  add_case("unequal", v, dfs, sv = cur$squeezeVar)
  v2 <- v
  v2[c(4, 31, 50)] <- v2[c(4, 31, 50)] * c(30, 15, 0.003)
  add_case("unequal_robust", v2, dfs, robust = TRUE, sv = cur$squeezeVar)
  add_case("unequal_robust_none", rinvchisq(60, 7, 0.4) * rchisq(60, dfs) / dfs, dfs, robust = TRUE,
           sv = cur$squeezeVar)
  dfs17 <- c(rep(6, 13), 5, 4, 4, 2)
  add_case("unequal_small", rinvchisq(17, 20, 0.3) * rchisq(17, dfs17) / dfs17, dfs17, robust = TRUE,
           sv = cur$squeezeVar)
  # equal df through the current squeezeVar (legacy path): same as installed limma
  add_case("current_robust", cases[["robust"]]$var, 5, robust = TRUE, sv = cur$squeezeVar)
}
write_tsv(do.call(rbind, cases), "squeezevar.tsv")

# ------------------------------------------------------------------------------------------
# composition: arcsine-sqrt proportions, lmFit + eBayes (as propeller), paired designs
# ------------------------------------------------------------------------------------------
set.seed(7)
n_pat <- 8
types <- sprintf("T%02d", 1:15)
abund <- c(0.30, 0.15, 0.10, 0.08, 0.07, 0.06, 0.05, 0.04, 0.035, 0.03, 0.025, 0.02, 0.015, 0.01, 0.005)
abund <- abund / sum(abund)
rdirichlet <- function(alpha) { g <- rgamma(length(alpha), alpha); g / sum(g) }
rows <- list()
for (p in seq_len(n_pat)) {
  pat <- rdirichlet(20 * abund)
  for (tp in c("baseline", "resection")) {
    q <- rdirichlet(50 * pat + 1e-8)
    cnt <- as.vector(rmultinom(1, round(exp(rnorm(1, log(2000), 0.5))), q))
    rows[[length(rows) + 1]] <- data.frame(
      sample_id = sprintf("P%02d_%s", p, tp), patient_id = sprintf("P%02d", p), timepoint = tp,
      response = if (p <= n_pat / 2) "responder" else "non_responder", t(setNames(cnt, types)),
      check.names = FALSE)
  }
}
counts <- do.call(rbind, rows)
write.table(counts, file.path(out_dir, "composition_counts.tsv"), sep = "\t", quote = FALSE, row.names = FALSE)

props <- as.matrix(counts[, types]) / rowSums(counts[, types])
y <- t(asin(sqrt(props)))
colnames(y) <- counts$sample_id
patient <- factor(counts$patient_id)
timepoint <- factor(counts$timepoint, levels = c("baseline", "resection"))
resp <- as.numeric(counts$response == "responder")
designs <- list(
  on_treatment = list(X = model.matrix(~ patient + timepoint), coef = "timepointresection"),
  interaction = list(X = cbind(model.matrix(~ patient + timepoint), `timepoint:response` = (timepoint == "resection") * resp),
                     coef = "timepoint:response")
)
eb_rows <- list()
for (dn in names(designs)) {
  fit <- lmFit(y, designs[[dn]]$X)
  for (trend in c(FALSE, TRUE)) {
    eb <- eBayes(fit, robust = TRUE, trend = trend)
    k <- designs[[dn]]$coef
    eb_rows[[length(eb_rows) + 1]] <- data.frame(
      case = paste0(dn, if (trend) "_trend_robust" else "_robust"), cell_type = rownames(y),
      coef = eb$coefficients[, k], stdev_unscaled = eb$stdev.unscaled[, k], sigma2 = eb$sigma^2,
      amean = eb$Amean, s2_prior = rep_len(eb$s2.prior, nrow(y)), df_prior = rep_len(eb$df.prior, nrow(y)),
      s2_post = eb$s2.post, t = eb$t[, k], df_total = eb$df.total, p_value = eb$p.value[, k])
  }
}
write_tsv(do.call(rbind, eb_rows), "composition_ebayes.tsv")

write_tsv(data.frame(what = c("R", "limma (installed)", "statmod", "limma source (unequal df)"),
                     version = c(R.version.string, as.character(packageVersion("limma")),
                                 as.character(packageVersion("statmod")), src_version)),
          "versions.tsv")
cat("wrote", out_dir, "\n")
