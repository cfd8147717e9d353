//! What `cargo xtask check` relies on in these scenarios, tried with the
//! workbench as it is handed out: a program stopped by an open part is told
//! at once, by its panic, not by a wait that runs out.

use anyhow::{Result, bail, ensure};

use crate::Case;
use crate::cluster::{Scenario, Stage};
use crate::step01::case;

pub fn cases() -> Vec<Case> {
    vec![Case {
        group: Some("checker"),
        ..case!(
            Stage::Step02,
            a_program_stopped_by_an_open_part_is_reported_at_once_by_its_panic,
            beyond_lesson
        )
    }]
}

/// Stage 2's workbench reconciles until `todo!("2.4: …")`: the wait for a
/// status ends with the panic's message and place, and the checker reads it
/// as a failure that sends the attendee to section 2.4.
async fn a_program_stopped_by_an_open_part_is_reported_at_once_by_its_panic(mut s: Scenario<'_>) -> Result<()> {
    s.start_program(&Stage::Step02.workbench()?)?;
    s.apply(
        "apiVersion: math.workshop.example/v1beta1\nkind: Number\nmetadata:\n  name: fifteen\nspec:\n  value: 15\n",
    )
    .await?;
    let waited = s
        .expect_status_field("Number", "fifteen", "fizzBuzz", serde_json::json!("FizzBuzz"))
        .await;
    let error = match waited {
        Ok(()) => {
            bail!("the workbench's stage 2 wrote a status: this scenario needs exercises/step02_status as handed out")
        }
        Err(error) => format!("{error:#}"),
    };
    ensure!(
        error.starts_with("the controller panicked: not yet implemented: 2.4: ")
            && error
                .lines()
                .nth(1)
                .is_some_and(|line| line.contains("exercises/step02_status/number.rs:")),
        "the wait did not end with the panic and its place, but with:\n{error}"
    );
    let output =
        format!("test step02_status::status ... FAILED\n\nfailures:\n\n---- step02_status::status ----\n{error}\n");
    let outcomes = xtask::check::parse_test_output(&output);
    let failed: Vec<&xtask::check::Outcome> = outcomes.iter().collect();
    let hints = xtask::check::Hints::new();
    let sections = xtask::check::sections_to_read("step02_status", &failed, &hints, &[]);
    ensure!(
        sections == ["2.4"],
        "the checker sends the attendee to {sections:?}, not to 2.4"
    );
    Ok(())
}
