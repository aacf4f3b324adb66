# DVC: version data/ (data.dvc) and every entry of results/ (but mlflow/) and reports/ (results|reports/<entry>.dvc),
# once, after every other job: DVC locks the repository, so it never runs in parallel jobs. `dvc add` leaves the
# files (and their modification times) untouched. Afterwards commit the pointers and push the data:
#   git add data.dvc results/*.dvc reports/*.dvc && git commit -m "..." && dvc push
# data.dvc, always written, is the rule's output: it exists in every clone, so a clone that pulled the data and ran
# `snakemake --touch` has nothing to do (see docs/versioning.md).


DVC_TRACKED = ["data.dvc"] if config["tracking"]["dvc"] else []


localrules:
    dvc_track,


rule dvc_track:
    input:
        # everything the default target needs (so: every output of the workflow), but this rule's own output
        lambda w: [f for f in rules.all.input if f not in DVC_TRACKED],
    output:
        "data.dvc",
    log:
        "logs/dvc/track.log",
    conda:
        SOFTWARE
    shell:
        "tmf dvc-track > {log} 2>&1"
