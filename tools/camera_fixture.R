# Write limma::camera's results for one fixed input, for tests/test_compare.py (the Python
# re-implementation in src/pinnacle/compare/_camera.py is tested against them to 1e-6 relative).
#
# R is a tool for making this fixture, never a dependency of the pipeline.
#
#   apt-get install -y r-bioc-limma        # Debian: limma 3.54
#   Rscript tools/camera_fixture.R [OUT_DIR]
#
# The input is drawn here (seeded): 60 genes x 8 samples, a paired design (4 patients x 2
# timepoints, ~ patient + timepoint, the timepoint coefficient tested), 3 gene sets: one
# co-regulated and shifted (a shared per-sample factor), one shifted only, one null.
# OUT_DIR: default tests/fixtures/camera.
#
# Writes (numbers with 17 significant digits):
#   expression.tsv  gene x sample log-expression (the input)
#   design.tsv      sample x design column (the last column is the tested coefficient)
#   sets.tsv        set, gene
#   stat.tsv        gene, stat: the per-gene statistics camera tests (moderated t from
#                   squeezeVar, converted to z with zscoreT(approx = TRUE, method = "hill"))
#   camera.tsv      inter_gene_cor ("NA" = estimated, or the fixed value), set, NGenes,
#                   Correlation, Direction, PValue, FDR
#   versions.tsv    R and limma versions

suppressPackageStartupMessages(library(limma))

args <- commandArgs(trailingOnly = TRUE)
out_dir <- if (length(args) >= 1) args[1] else "tests/fixtures/camera"
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

fmt <- function(df) {
  for (j in seq_along(df)) if (is.double(df[[j]])) df[[j]] <- sprintf("%.17g", df[[j]])
  df
}
write_tsv <- function(df, name) {
  write.table(fmt(df), file.path(out_dir, name), sep = "\t", quote = FALSE, row.names = FALSE)
}

set.seed(20240716)
G <- 60
patients <- rep(sprintf("P%d", 1:4), each = 2)
timepoint <- rep(c("baseline", "resection"), 4)
samples <- paste(patients, timepoint, sep = "_")
genes <- sprintf("g%02d", 1:G)
design <- model.matrix(~ factor(patients) + factor(timepoint))
colnames(design) <- c("intercept", "P2", "P3", "P4", "resection")
rownames(design) <- samples

y <- matrix(rnorm(G * 8, sd = 0.5), G, 8, dimnames = list(genes, samples))
y <- y + rnorm(G, mean = 5, sd = 1)                          # gene means
y <- y + outer(rep(1, G), rnorm(4, sd = 0.7)[rep(1:4, each = 2)])  # patient effects
shared <- rnorm(8, sd = 0.6)
y[1:12, ] <- y[1:12, ] + outer(rep(1, 12), shared)           # set A: co-regulated
y[1:12, timepoint == "resection"] <- y[1:12, timepoint == "resection"] + 0.5
y[13:22, timepoint == "resection"] <- y[13:22, timepoint == "resection"] - 0.4  # set B: shifted
sets <- list(A = genes[1:12], B = genes[13:22], C = genes[c(23:30, 5, 17)])  # C: null, overlaps

# The statistics camera tests (its own code, with the default contrast = last column).
QR <- qr(design)
p <- ncol(design)
effects <- qr.qty(QR, t(y))
unscaledt <- effects[p, ]
if (QR$qr[p, p] < 0) unscaledt <- -unscaledt
U <- effects[-(1:p), , drop = FALSE]
sigma2 <- colMeans(U^2)
df_residual <- nrow(design) - p
sv <- squeezeVar(sigma2, df = df_residual)
modt <- unscaledt / sqrt(sv$var.post)
df_total <- min(df_residual + sv$df.prior, G * df_residual)
stat <- zscoreT(modt, df = df_total, approx = TRUE, method = "hill")

rows <- list()
for (cor in list(NA, 0.01)) {
  tab <- camera(y, sets, design = design, inter.gene.cor = cor, sort = FALSE)
  rows[[length(rows) + 1]] <- data.frame(
    inter_gene_cor = if (is.na(cor)) "NA" else format(cor), set = rownames(tab),
    NGenes = tab$NGenes, Correlation = if (is.null(tab$Correlation)) cor else tab$Correlation,
    Direction = tab$Direction, PValue = tab$PValue, FDR = tab$FDR
  )
}

write_tsv(data.frame(gene = genes, y, check.names = FALSE), "expression.tsv")
write_tsv(data.frame(sample = samples, design, check.names = FALSE), "design.tsv")
write_tsv(data.frame(set = rep(names(sets), lengths(sets)), gene = unlist(sets)), "sets.tsv")
write_tsv(data.frame(gene = genes, stat = stat), "stat.tsv")
write_tsv(do.call(rbind, rows), "camera.tsv")
write_tsv(data.frame(R = R.version.string, limma = as.character(packageVersion("limma"))), "versions.tsv")
