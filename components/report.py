from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Output

from components.images import CPU, image


@dsl.component(base_image=image(CPU), install_kfp_package=False)
def report(
    results: Input[list[Dataset]],
    decision: str,
    skipped: list,
    store: str,
    run_id: str,
    table: Output[Dataset],
    html: Output[HTML],
    markdown: Output[Markdown],
) -> str:
    """One table comparing the weight sources that trained, naming those that failed; then, if none failed,
    the run is recorded as the last successful one. Returns the failures (JSON) for the run's last step."""
    import json
    import shutil
    from pathlib import Path

    from cxrtl.failures import failures_note, promotion_withheld_note, read_failure
    from cxrtl.promote import Decision
    from cxrtl.report import REPORT_FILES, report_from_folders, skipped_sources_note
    from cxrtl.retrain import record_success
    from cxrtl.store import keys, open_store

    target = open_store(store)
    folders = [Path(r.path) for r in results]
    failures = [f for f in map(read_failure, folders) if f is not None]
    finished = [f for f in folders if read_failure(f) is None]
    notes = [Decision.from_json(decision).note() if decision else promotion_withheld_note(failures, len(finished))]
    notes += [skipped_sources_note(skipped)] if skipped else []
    notes += [failures_note(failures)] if failures else []
    if finished:
        written = report_from_folders(finished, Path(table.path), target, run_id, notes)
        print(written.text())
        shutil.copyfile(Path(table.path) / REPORT_FILES["html"], html.path)
        Path(markdown.path).write_text(written.markdown(embed=True))  # the KFP UI shows this one file alone
    else:  # nothing to compare: the outputs say why
        Path(table.path).mkdir(parents=True, exist_ok=True)
        Path(markdown.path).write_text("\n\n".join(notes) + "\n")
        Path(html.path).write_text("".join(f"<p>{note}</p>\n" for note in notes))
    if not failures:
        record_success(target, run_id)
    report_url = f"{target.url.rstrip('/')}/{keys.report_key(run_id, REPORT_FILES['html'])}" if finished else ""
    return json.dumps({"failures": [json.loads(f.to_json()) for f in failures], "report": report_url})
